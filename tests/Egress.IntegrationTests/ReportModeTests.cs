using System.Net;
using System.Text;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// <c>egress.mode = "report"</c>, end to end: a name outside the list resolves and its connection goes through, with a
/// would-deny line on both hosts; the metadata address stays denied on both; <c>egress-enclave report-to-allowlist</c>
/// turns the captured logs into the entry that would allow what was reported.
/// </summary>
[TestFixture]
public sealed class ReportModeTests : EgressFixture
{
    private const string Listed = "listed.allowed.test";
    private const string Unlisted = "unlisted.report.test";

    internal override string ConfigToml =>
        EnclaveConfig.Render([$"{Listed}:{WorldPorts.Http}"]).Replace("enabled = true\n", "enabled = true\nmode = \"report\"\n", StringComparison.Ordinal);

    internal override async Task PrepareAsync(Topology topology)
    {
        await topology.StartDnsmasqAsync(DnsmasqRecord.Host(Listed, WorldAddresses.Allowed), DnsmasqRecord.Host(Unlisted, WorldAddresses.Unlisted));
        topology.SetEnclaveNameserver(IPAddress.Loopback);
    }

    [Test]
    public async Task AnUnlistedNameResolvesAndConnectsWithAWouldDenyLineOnBothHosts()
    {
        var http = await Clients.CurlAsync(Topology.Enclave, $"http://{Unlisted}/", "-o", "/dev/null", "-w", "%{http_code}");
        string destination = $"{WorldAddresses.Unlisted}:{WorldPorts.Http}";
        var enclaveDns = await LogLineAsync(Deployment.Enclave, $"report mode: would deny DNS {Unlisted} A: name not in allowlist; answered NOERROR");
        var enclaveConnection = await LogLineAsync(Deployment.Enclave, $"report mode: would deny connection to {destination} (name {Unlisted}): name {Unlisted} not in allowlist; allowed");
        var parentConnection = await LogLineAsync(Deployment.Host, $"report mode: would deny connection to {destination} (name {Unlisted}): name {Unlisted} not in allowlist; allowed");

        Assert.Multiple(() =>
        {
            Assert.That((http.ExitCode, http.StandardOutput), Is.EqualTo((0, "200")), http.ToString);
            Assert.That(enclaveDns, Is.Not.Null, () => $"no would-deny DNS line in the enclave:\n{Deployment.Enclave.Output}");
            Assert.That(enclaveConnection, Is.Not.Null, () => $"no would-deny connection line in the enclave:\n{Deployment.Enclave.Output}");
            Assert.That(parentConnection, Is.Not.Null, () => $"no would-deny connection line on the parent:\n{Deployment.Host.Output}");
            Assert.That(World.Nginx.WasReachedOn(WorldAddresses.Unlisted), Is.True);
        });
    }

    /// <summary>A trial: the would-deny line said <c>resolved</c> for a name that does not exist (it was logged before
    /// the answer). It is now logged with the answer, on both hosts.</summary>
    [Test]
    public async Task ANameThatDoesNotExistIsLoggedAsAnsweredNxdomainOnBothHosts()
    {
        const string Missing = "missing.report.test";
        var curl = await Clients.CurlAsync(Topology.Enclave, $"http://{Missing}/");
        var enclaveDns = await LogLineAsync(Deployment.Enclave, $"report mode: would deny DNS {Missing} A: name not in allowlist; answered NXDOMAIN");
        var parentDns = await LogLineAsync(Deployment.Host, $"report mode: would deny DNS {Missing} A: name not in allowlist; answered NXDOMAIN");

        Assert.Multiple(() =>
        {
            Assert.That(curl.ExitCode, Is.EqualTo(6), () => $"curl: could not resolve host expected: {curl}");
            Assert.That(enclaveDns, Is.Not.Null, () => $"no NXDOMAIN would-deny line in the enclave:\n{Deployment.Enclave.Output}");
            Assert.That(parentDns, Is.Not.Null, () => $"no NXDOMAIN would-deny line on the parent:\n{Deployment.Host.Output}");
        });
    }

    [Test]
    public async Task TheMetadataAddressStaysDeniedOnBothHosts()
    {
        var http = await Clients.CurlAsync(Topology.Enclave, $"http://{WorldAddresses.Metadata}/");
        var enclaveDenied = await LogLineAsync(Deployment.Enclave, $"{WorldAddresses.Metadata}:{WorldPorts.Http}", "denied: internal range", "report mode does not relax internal addresses");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var parent = await TunnelProbe.RequestAsync(Deployment.TunnelSocketPath, new IPEndPoint(WorldAddresses.Metadata, WorldPorts.Http), cts.Token);

        Assert.Multiple(() =>
        {
            Assert.That(Clients.RefusedOrReset, Does.Contain(http.ExitCode), http.ToString);
            Assert.That(enclaveDenied, Is.Not.Null, () => $"the enclave did not deny the metadata address:\n{Deployment.Enclave.Output}");
            Assert.That(parent.Status, Is.EqualTo(TunnelProbe.StatusDeniedByPolicy), parent.Detail);
            Assert.That(parent.Detail, Does.Contain("report mode does not relax internal addresses"));
            Assert.That(World.Nginx.WasReachedOn(WorldAddresses.Metadata), Is.False, "the metadata address was reached");
        });
    }

    [Test]
    public async Task ReportToAllowlistDerivesTheEntryFromTheCapturedLogs()
    {
        var http = await Clients.CurlAsync(Topology.Enclave, $"http://{Unlisted}/", "-o", "/dev/null", "-w", "%{http_code}");
        await Clients.CurlAsync(Topology.Enclave, $"http://{WorldAddresses.Metadata}/");
        await LogLineAsync(Deployment.Host, $"report mode: would deny connection to {WorldAddresses.Unlisted}:{WorldPorts.Http}");
        byte[] log = Encoding.UTF8.GetBytes(Deployment.Enclave.Output + "\n" + Deployment.Host.Output + "\n");

        var derived = await Command.RunAsync(HostBinaries.Enclave("report-to-allowlist"), Clients.Timeout, log);

        Assert.Multiple(() =>
        {
            Assert.That(http.StandardOutput, Is.EqualTo("200"), http.ToString);
            Assert.That(derived.ExitCode, Is.Zero, derived.ToString);
            Assert.That(derived.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(new[] { $"{Unlisted}:{WorldPorts.Http}" }), derived.ToString);
        });
    }
}
