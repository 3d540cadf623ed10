using System.Net;
using System.Text;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// The report-mode workflow with TLS apps (a trial, 5 December 2026): three apps reach one HTTPS server, by its name
/// (resolved through the enclave), by its address (no server name), and under a name they never resolved through the
/// enclave (<c>curl --resolve</c>). Before, report-to-allowlist proposed only the name, and enforce refused the other two
/// ClientHellos, with nothing in report mode to say it would. Now report mode reads their ClientHellos, and
/// report-to-allowlist proposes the name and says, on standard error, that only an entry for the address lets the other
/// two through (and that it switches off the server-name check there, so it is left to the operator).
/// <see cref="ReportModeTlsProposalTests"/> runs the same apps in enforce mode with the proposal and that entry.
/// </summary>
[TestFixture]
public sealed class ReportModeTlsTests : EgressFixture
{
    internal const string Name = "c.report.test";
    internal const string Unresolved = "x.report.test";
    internal const int TlsPort = 443;

    internal static IPAddress Address => WorldAddresses.Unlisted;

    /// <summary>What report-to-allowlist proposes for the three apps.</summary>
    internal static readonly string[] Proposal = [$"{Name}:{TlsPort}"];

    /// <summary>The entry its standard error names for the two apps no name entry lets through.</summary>
    internal static string AddressEntry => $"{Address}:{TlsPort}";

    internal override string ConfigToml =>
        EnclaveConfig.Render([]).Replace("enabled = true\n", "enabled = true\nmode = \"report\"\n", StringComparison.Ordinal);

    internal override async Task PrepareAsync(Topology topology) => await PrepareWorldAsync(topology);

    internal static async Task PrepareWorldAsync(Topology topology)
    {
        await topology.StartDnsmasqAsync(DnsmasqRecord.Host(Name, Address));
        topology.SetEnclaveNameserver(IPAddress.Loopback);
        await TlsWorldServer.StartAsync(topology, Name, TlsPort);
    }

    /// <summary>The three apps: by name, by address, under a name not resolved through the enclave; their curl results.</summary>
    internal static async Task<CommandResult[]> RunAppsAsync(Topology topology) =>
    [
        await Clients.CurlAsync(topology.Enclave, $"https://{Name}/", "-k", "-o", "/dev/null", "-w", "%{http_code}"),
        await Clients.CurlAsync(topology.Enclave, $"https://{Address}/", "-k", "-o", "/dev/null", "-w", "%{http_code}"),
        await Clients.CurlAsync(topology.Enclave, $"https://{Unresolved}/", "-k", "--resolve", $"{Unresolved}:{TlsPort}:{Address}", "-o", "/dev/null", "-w", "%{http_code}"),
    ];

    [Test]
    public async Task ReportToAllowlistProposesWhatLetsEachTlsAppThrough()
    {
        CommandResult[] apps = await RunAppsAsync(Topology);
        string destination = $"{Address}:{TlsPort}";
        var noName = await LogLineAsync(Deployment.Enclave, $"connection to {destination} would be refused", "the ClientHello has no server name");
        var notLearned = await LogLineAsync(Deployment.Enclave, $"connection to {destination} would be refused", $"server name {Unresolved} is not a name the address was learned from");
        await LogLineAsync(Deployment.Host, $"connection to {destination}", $"server name {Unresolved}");
        byte[] log = Encoding.UTF8.GetBytes(Deployment.Enclave.Output + "\n" + Deployment.Host.Output + "\n");

        var derived = await Command.RunAsync(HostBinaries.Enclave("report-to-allowlist"), Clients.Timeout, log);

        Assert.Multiple(() =>
        {
            Assert.That(apps.Select(app => app.StandardOutput), Is.EqualTo(new[] { "200", "200", "200" }), () => string.Join("\n", apps.Select(app => app.ToString())));
            Assert.That(noName, Is.Not.Null, () => $"no would-refuse line for the ClientHello without a server name:\n{Deployment.Enclave.Output}");
            Assert.That(notLearned, Is.Not.Null, () => $"no would-refuse line for {Unresolved}:\n{Deployment.Enclave.Output}");
            Assert.That(derived.ExitCode, Is.Zero, derived.ToString);
            Assert.That(derived.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(Proposal), derived.ToString);
            Assert.That(derived.StandardError, Does.Contain($"# left out {AddressEntry}: a TLS client reached it and ").And.Contain($"the entry \"{AddressEntry}\" would"), derived.ToString);
        });
    }
}

/// <summary>The apps of <see cref="ReportModeTlsTests"/> in enforce mode with its proposal and the address entry its
/// standard error names: each gets through.</summary>
[TestFixture]
public sealed class ReportModeTlsProposalTests : EgressFixture
{
    internal override string ConfigToml => EnclaveConfig.Render([.. ReportModeTlsTests.Proposal, ReportModeTlsTests.AddressEntry]);

    internal override async Task PrepareAsync(Topology topology) => await ReportModeTlsTests.PrepareWorldAsync(topology);

    [Test]
    public async Task EveryTlsAppGetsThroughInEnforceModeWithTheProposal()
    {
        CommandResult[] apps = await ReportModeTlsTests.RunAppsAsync(Topology);

        Assert.That(apps.Select(app => (app.ExitCode, app.StandardOutput)), Is.EqualTo(new[] { (0, "200"), (0, "200"), (0, "200") }),
            () => string.Join("\n", apps.Select(app => app.ToString())) + "\n" + Deployment.Enclave.Output);
    }
}
