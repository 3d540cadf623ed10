using System.Net;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// Ports per destination, end to end: an allowed name opens only its entry's ports on the addresses learned from it,
/// an address entry only its own, and the parent checks the port too (a tunnel request sent straight to it for a
/// learned address on another port is denied).
/// </summary>
[TestFixture]
public sealed class DestinationPortTests : EgressFixture
{
    private const string Name = "ports.allowed.test";

    internal override string ConfigToml => EnclaveConfig.Render([$"{Name}:{WorldPorts.Echo}", $"{WorldAddresses.Allowed}:{WorldPorts.Http}"]);

    internal override async Task PrepareAsync(Topology topology)
    {
        await topology.StartDnsmasqAsync(DnsmasqRecord.Host(Name, WorldAddresses.Unlisted));
        topology.SetEnclaveNameserver(IPAddress.Loopback);
    }

    [Test]
    public async Task ANameOpensOnlyItsEntrysPortsOnBothSides()
    {
        var echo = await Clients.NcAsync(Topology.Enclave, "on 7\n"u8.ToArray(), "-N", "-w", "5", Name, $"{WorldPorts.Echo}");
        var http = await Clients.CurlAsync(Topology.Enclave, $"http://{Name}/");
        var enclaveDenied = await LogLineAsync(Deployment.Enclave, $"{WorldAddresses.Unlisted}:{WorldPorts.Http}", $"port not allowed by \"{Name}:{WorldPorts.Echo}\"");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var parent = await TunnelProbe.RequestAsync(Deployment.TunnelSocketPath, new IPEndPoint(WorldAddresses.Unlisted, WorldPorts.Http), Name, cts.Token);

        Assert.Multiple(() =>
        {
            Assert.That((echo.ExitCode, echo.StandardOutput), Is.EqualTo((0, "on 7\n")), echo.ToString);
            Assert.That(Clients.RefusedOrReset, Does.Contain(http.ExitCode), http.ToString);
            Assert.That(enclaveDenied, Is.Not.Null, () => $"the enclave did not deny port 80:\n{Deployment.Enclave.Output}");
            Assert.That(parent.Status, Is.EqualTo(TunnelProbe.StatusDeniedByPolicy), parent.Detail);
            Assert.That(parent.Detail, Does.Contain($"port not allowed by \"{Name}:{WorldPorts.Echo}\""));
            Assert.That(World.Nginx.WasReachedOn(WorldAddresses.Unlisted), Is.False, "nginx on the name's address was reached on a port its entry does not allow");
        });
    }

    [Test]
    public async Task AnAddressEntryOpensOnlyItsPort()
    {
        var http = await Clients.CurlAsync(Topology.Enclave, $"http://{WorldAddresses.Allowed}/", "-o", "/dev/null", "-w", "%{http_code}");
        var echo = await Clients.NcAsync(Topology.Enclave, "on 7\n"u8.ToArray(), "-N", "-w", "5", WorldAddresses.Allowed.ToString(), $"{WorldPorts.Echo}");
        var check = await Command.RunAsync(HostBinaries.Enclave("check", $"{WorldAddresses.Allowed}:{WorldPorts.Echo}", "--config", Deployment.ConfigPath), Clients.Timeout);

        Assert.Multiple(() =>
        {
            Assert.That((http.ExitCode, http.StandardOutput), Is.EqualTo((0, "200")), http.ToString);
            Assert.That(echo.StandardOutput, Is.Empty, echo.ToString);
            Assert.That(check.ExitCode, Is.EqualTo(1), check.ToString);
            Assert.That(check.StandardOutput, Does.Contain($"connect: denied: port not allowed by \"{WorldAddresses.Allowed}:{WorldPorts.Http}\""), check.ToString);
        });
    }
}
