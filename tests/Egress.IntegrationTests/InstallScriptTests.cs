using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// deploy/host/install.sh staged under DESTDIR (no root needed, no systemctl), and once for real in a private mount
/// namespace with a stand-in systemctl, with a stand-in for a published egress-host that runs the built one: what a
/// new user's trial and reviews of it found.
/// </summary>
[TestFixture]
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class InstallScriptTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>The test's own directory: the stand-in build, its configuration and the DESTDIR stage.</summary>
    private string _directory = string.Empty;

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("egress-install-").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_directory, recursive: true);

    // A framework-dependent build's directory was "installed" as its launcher alone, which then could not run
    // ("The application to execute does not exist: '/opt/egress/egress-host.dll'").
    [Test]
    public async Task AFrameworkDependentBuildIsRefusedAndNothingIsInstalled()
    {
        string from = PublishedStandIn(_directory);
        await File.WriteAllBytesAsync(Path.Combine(from, "egress-host.dll"), []);
        string stage = Path.Combine(_directory, "stage");

        var result = await InstallAsync(stage, "--from", from, "--config", Path.Combine(Repository.Root, "samples", "enclave.toml"));

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(1), result.ToString);
            Assert.That(result.StandardError, Does.Contain($"install: error: '{from}' is a framework-dependent build (egress-host.dll beside the launcher)"), result.ToString);
            Assert.That(Directory.Exists(stage), Is.False, "nothing staged");
        });
    }

    // The configuration is checked as a hidden copy where it would be installed, and its errors named the copy
    // (".../etc/egress/.enclave.toml.paThpe:2:1: error: ..."), not the user's file.
    [Test]
    public async Task AnInvalidConfigurationIsReportedInTheGivenFilesName()
    {
        string from = PublishedStandIn(_directory);
        string config = Path.Combine(_directory, "typo.toml");
        await File.WriteAllTextAsync(config, "[egress]\nenabled = true\ndestnations = [\"api.example.com\"]\n");
        string stage = Path.Combine(_directory, "stage");

        var result = await InstallAsync(stage, "--from", from, "--config", config);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(1), result.ToString);
            Assert.That(result.StandardError, Does.Contain($"{config}:3:1: error: unknown key; did you mean 'destinations'? (key 'egress.destnations')"), result.ToString);
            Assert.That(result.StandardError, Does.Not.Contain(".enclave.toml."), result.ToString);
            Assert.That(Directory.Exists(stage), Is.False, "nothing staged");
        });
    }

    // A new user's trial: without --config the demo's sample policy was installed without a word (and --enable would
    // have started the service on it).
    [Test]
    public async Task WithoutConfigTheSamplePolicyIsNamedAndNotEnabled()
    {
        string from = PublishedStandIn(_directory);
        string stage = Path.Combine(_directory, "stage");

        var enabled = await InstallAsync(stage, "--from", from, "--enable");
        bool stagedByEnable = Directory.Exists(stage);
        var installed = await InstallAsync(stage, "--from", from);

        Assert.Multiple(() =>
        {
            Assert.That(enabled.ExitCode, Is.EqualTo(1), enabled.ToString);
            Assert.That(enabled.StandardError, Does.Contain("install: error: --enable without --config would start egress-host on the sample policy"), enabled.ToString);
            Assert.That(stagedByEnable, Is.False, "nothing staged");
            Assert.That(installed.ExitCode, Is.EqualTo(0), installed.ToString);
            Assert.That(installed.StandardOutput, Does.Contain("enclave.toml: the SAMPLE policy (no --config given"), installed.ToString);
            Assert.That(File.ReadAllText(Path.Combine(stage, "etc", "egress", "enclave.toml")), Is.EqualTo(File.ReadAllText(Path.Combine(Repository.Root, "samples", "enclave.toml"))));
        });
    }

    // From a review: an upgrade (or --force-config) replaced the program, policy and unit, then ran `systemctl enable
    // --now`, which leaves a running service alone: the old program kept enforcing the old policy while the script
    // said "egress-host is running". A running service is now restarted when this run changed anything or it predates
    // the installed files. Staged here (no systemd): what changed, as the restart decides it; an unchanged file is
    // left in place, so that its time stays that of the install that wrote it.
    [Test]
    public async Task WhatChangedIsTrackedForTheRestartOfARunningService()
    {
        string from = PublishedStandIn(_directory);
        string stage = Path.Combine(_directory, "stage");
        string config = Path.Combine(_directory, "enclave.toml");
        await File.WriteAllTextAsync(config, "[egress]\nenabled = true\ndestinations = [\"api.example.com\"]\n");

        var first = await InstallAsync(stage, "--from", from, "--config", config);
        string program = Path.Combine(stage, "opt", "egress", "egress-host");
        string unit = Path.Combine(stage, "etc", "systemd", "system", "egress-host.service");
        var writtenFirst = (File.GetLastWriteTimeUtc(program), File.GetLastWriteTimeUtc(unit));
        await Task.Delay(1100); // file times in whole seconds on some file systems
        var again = await InstallAsync(stage, "--from", from, "--config", config);
        var writtenAgain = (File.GetLastWriteTimeUtc(program), File.GetLastWriteTimeUtc(unit));
        await File.WriteAllTextAsync(config, "[egress]\nenabled = true\ndestinations = [\"api.example.org\"]\n");
        var newPolicy = await InstallAsync(stage, "--from", from, "--config", config, "--force-config");

        Assert.Multiple(() =>
        {
            Assert.That((first.ExitCode, again.ExitCode, newPolicy.ExitCode), Is.EqualTo((0, 0, 0)), $"{first}\n{again}\n{newPolicy}");
            Assert.That(first.StandardOutput, Does.Contain("a running egress-host would be restarted (changed: program configuration unit)"), first.ToString);
            Assert.That(writtenAgain, Is.EqualTo(writtenFirst), "identical program and unit left in place");
            Assert.That(again.StandardOutput, Does.Contain("kept ").And.Contain("egress-host (the same program)"), again.ToString);
            Assert.That(again.StandardOutput, Does.Contain("nothing changed: a running egress-host would be restarted only if it started before the files were installed"), again.ToString);
            Assert.That(newPolicy.StandardOutput, Does.Contain("a running egress-host would be restarted (changed: configuration)"), newPolicy.ToString);
        });
    }

    // The systemctl branch, which the DESTDIR runs above never reach (CI has no systemd): install.sh as root for real,
    // in a private mount namespace whose /etc and /run are overlays on the machine's (writes land in this test's
    // directory; the machine's files are untouched), with /run/systemd/system present and a stand-in systemctl on PATH
    // that logs its calls and answers is-active and ActiveEnterTimestamp from files the driver sets.
    [Test]
    public async Task ARunningServiceIsRestartedOnlyWhenWhatItRunsIsNotWhatIsInstalled()
    {
        string from = PublishedStandIn(_directory);
        string config = Path.Combine(_directory, "enclave.toml");
        await File.WriteAllTextAsync(config, "[egress]\nenabled = true\ndestinations = [\"api.example.com\"]\n");
        string bin = Directory.CreateDirectory(Path.Combine(_directory, "bin")).FullName;
        string state = Directory.CreateDirectory(Path.Combine(_directory, "state")).FullName;
        string systemctl = Path.Combine(bin, "systemctl");
        await File.WriteAllTextAsync(systemctl, $$"""
            #!/bin/sh
            echo "systemctl $*" >> '{{state}}/calls'
            case $1 in
              is-active) [ -e '{{state}}/active' ] ;;
              show) cat '{{state}}/started' ;;
              start|restart) touch '{{state}}/active'; date -d '+1 hour' > '{{state}}/started' ;;
              *) exit 0 ;;
            esac
            """);
        File.SetUnixFileMode(systemctl, (UnixFileMode)0b111_101_101);
        string install = Path.Combine(Repository.Root, "deploy", "host", "install.sh");
        string prefix = Path.Combine(_directory, "opt", "egress");
        string driver = Path.Combine(_directory, "driver.sh");
        // Each step: a marker line, then install.sh's output and the systemctl calls it made.
        await File.WriteAllTextAsync(driver, $$"""
            set -u
            d='{{_directory}}'
            for top in etc run; do
              mkdir -p "$d/overlay/$top/upper" "$d/overlay/$top/work"
              mount -t overlay overlay -o "lowerdir=/$top,upperdir=$d/overlay/$top/upper,workdir=$d/overlay/$top/work" "/$top" || exit 90
            done
            mkdir -p /run/systemd/system
            export PATH='{{bin}}':$PATH
            step() { # step NAME ARGS...: run install.sh, print its output and the calls it made
              name=$1; shift
              rm -f '{{state}}/calls'
              echo "== $name"
              sh '{{install}}' --from '{{from}}' --prefix '{{prefix}}' "$@" 2>&1; echo "exit $?"
              cat '{{state}}/calls' 2>/dev/null
            }
            step fresh --config '{{config}}'
            step enable --config '{{config}}' --enable
            step unchanged --config '{{config}}'
            date -d '-1 hour' > '{{state}}/started'
            step started-before-the-files --config '{{config}}'
            printf '[egress]\nenabled = true\ndestinations = ["api.example.org"]\n' > '{{config}}'
            step new-policy --config '{{config}}' --force-config
            test -e /etc/egress/enclave.toml && echo "installed into the overlay"
            """);

        var result = await Command.RunAsync(["unshare", "--mount", "--propagation", "private", "sh", driver], Timeout * 3);
        if (result.ExitCode == 90)
        {
            Assert.Ignore($"overlayfs cannot be mounted here, so install.sh cannot run as root without touching the machine's /etc: {result}");
        }

        string output = result.StandardOutput;
        string Step(string name) =>
            output[(output.IndexOf($"== {name}\n", StringComparison.Ordinal) is var at and >= 0 ? at : throw new AssertionException($"no step {name}:\n{result}"))..] is var rest
                && rest.IndexOf("\n== ", 3, StringComparison.Ordinal) is var next and >= 0 ? rest[..next] : rest;

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(0), result.ToString);
            Assert.That(output.Split('\n').Count(line => line == "exit 0"), Is.EqualTo(5), "every install.sh run succeeded");
            Assert.That(output, Does.Contain("installed into the overlay"));
            Assert.That(File.Exists("/etc/egress/enclave.toml") && File.ReadAllText("/etc/egress/enclave.toml").Contains("api.example.org", StringComparison.Ordinal), Is.False, "the machine's /etc untouched");

            Assert.That(Step("fresh"), Does.Contain("exit 0").And.Contain("systemctl daemon-reload").And.Contain("systemctl is-active --quiet egress-host.service")
                .And.Contain("install: next: systemctl enable --now egress-host").And.Not.Contain("systemctl start").And.Not.Contain("systemctl enable egress-host.service"));
            Assert.That(Step("enable"), Does.Contain("systemctl enable egress-host.service").And.Contain("systemctl start egress-host.service")
                .And.Contain("install: egress-host is running"));
            Assert.That(Step("unchanged"), Does.Contain("egress-host is running what is installed; not restarted").And.Not.Contain("systemctl restart"));
            Assert.That(Step("started-before-the-files"), Does.Contain("systemctl restart egress-host.service")
                .And.Contain("restarted egress-host (it now runs what is installed)"));
            Assert.That(Step("new-policy"), Does.Contain("systemctl restart egress-host.service")
                .And.Contain("restarted egress-host (changed: configuration; it now runs what is installed)"));
        });
    }

    private static Task<CommandResult> InstallAsync(string stage, params string[] arguments) =>
        Command.RunAsync(["env", $"DESTDIR={stage}", "sh", Path.Combine(Repository.Root, "deploy", "host", "install.sh"), .. arguments], Timeout);

    /// <summary>A directory holding an executable egress-host that runs the built one (as a single-file publish would).</summary>
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private static string PublishedStandIn(string directory)
    {
        string from = Directory.CreateDirectory(Path.Combine(directory, "published")).FullName;
        string launcher = Path.Combine(from, "egress-host");
        File.WriteAllText(launcher, $"#!/bin/sh\nexec '{HostBinaries.Dotnet}' '{HostBinaries.HostDll}' \"$@\"\n");
        File.SetUnixFileMode(launcher, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        return from;
    }
}
