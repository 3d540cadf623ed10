using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// deploy/host/install.sh staged under DESTDIR (no root needed, no systemctl), with a stand-in for a published
/// egress-host that runs the built one: what a new user's trial of it found.
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
