using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary><c>--version</c> and the head of <c>--help</c>, as the built hosts print them (no root needed).</summary>
[TestFixture]
public sealed partial class VersionTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [TestCase("egress-enclave")]
    [TestCase("egress-host")]
    public async Task VersionPrintsTheProgramItsInformationalVersionAndTheRuntime(string program)
    {
        string dll = Dll(program);
        string? informational = FileVersionInfo.GetVersionInfo(dll).ProductVersion;

        var result = await Command.RunAsync([HostBinaries.Dotnet, dll, "--version"], Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.Zero, result.ToString);
            Assert.That(result.StandardOutput, Is.EqualTo($"{program} {informational} ({RuntimeInformation.FrameworkDescription}, {RuntimeInformation.RuntimeIdentifier})\n"), result.ToString);
            Assert.That(result.StandardError, Is.Empty, result.ToString);
        });
    }

    [TestCase("egress-enclave")]
    [TestCase("egress-host")]
    public async Task ABuildFromAGitCheckoutNamesItsCommit(string program)
    {
        string root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", ".."));
        if (!Path.Exists(Path.Combine(root, ".git")))
        {
            Assert.Ignore($"{root} is not a git checkout, so the build has no commit to name.");
        }

        var result = await Command.RunAsync([HostBinaries.Dotnet, Dll(program), "--version"], Timeout);

        Assert.That(CommitVersion().IsMatch(result.StandardOutput), Is.True, result.ToString);
    }

    [TestCase("egress-enclave")]
    [TestCase("egress-host")]
    public async Task HelpStartsWithTheVersionAndListsTheOption(string program)
    {
        string dll = Dll(program);
        var version = await Command.RunAsync([HostBinaries.Dotnet, dll, "--version"], Timeout);

        var help = await Command.RunAsync([HostBinaries.Dotnet, dll, "--help"], Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(help.ExitCode, Is.Zero, help.ToString);
            Assert.That(version.ExitCode, Is.Zero, version.ToString);
            Assert.That(version.StandardOutput, Does.StartWith(Path.GetFileNameWithoutExtension(dll) + " "), version.ToString);
            Assert.That(help.StandardOutput, Does.StartWith(version.StandardOutput), help.ToString);
            Assert.That(help.StandardOutput, Does.Contain("\n  --version "), help.ToString);
        });
    }

    private static string Dll(string program) => program == "egress-enclave" ? HostBinaries.EnclaveDll : HostBinaries.HostDll;

    [GeneratedRegex(@"^egress-(enclave|host) \d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?\+[0-9a-f]{40} \(")]
    private static partial Regex CommitVersion();
}
