using System.Net;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// <c>[host] internal_networks</c> on the real hosts: with <c>"*"</c> allowed, a network the key lists (here one world
/// address, 198.18.0.10, standing in for a VPC's CIDR; the probe builds IPv4 requests only) is denied by egress-host to a tunnel request sent
/// straight to its socket, as a compromised enclave could send it, while <c>"*"</c> still reaches what is outside it.
/// </summary>
[TestFixture]
public sealed class InternalNetworksTests : EgressFixture
{
    internal override string ConfigToml =>
        EnclaveConfig.Render(["*"]).Replace("[host]\n", "[host]\ninternal_networks = [\"198.18.0.10\"]\n", StringComparison.Ordinal);

    [Test]
    public async Task TheParentDeniesAnInternalNetworkThatAllowAllWouldReach()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var denied = await TunnelProbe.RequestAsync(Deployment.TunnelSocketPath, new IPEndPoint(WorldAddresses.Allowed, WorldPorts.Http), cts.Token);
        var allowed = await TunnelProbe.RequestAsync(Deployment.TunnelSocketPath, new IPEndPoint(WorldAddresses.Unlisted, WorldPorts.Http), cts.Token);
        var line = await LogLineAsync(Deployment.Host, $"{WorldAddresses.Allowed}:{WorldPorts.Http}", "internal network 198.18.0.10/32 ([host] internal_networks)");
        var started = await LogLineAsync(Deployment.Host, "internal networks besides the built-in ranges ([host] internal_networks), denied unless an address or network entry covers them: 198.18.0.10/32");

        Assert.Multiple(() =>
        {
            Assert.That(denied.Status, Is.EqualTo(TunnelProbe.StatusDeniedByPolicy), () => $"detail: {denied.Detail}");
            Assert.That(started, Is.Not.Null, () => $"egress-host did not say at start which networks it treats as internal:\n{Deployment.Host.Output}");
            Assert.That(line, Is.Not.Null, () => $"egress-host logged no denial naming the internal network:\n{Deployment.Host.Output}");
            Assert.That(World.Nginx.WasReachedOn(WorldAddresses.Allowed), Is.False, "the parent dialled an internal network");
            Assert.That(allowed.Status, Is.EqualTo(TunnelProbe.StatusOk), () => $"\"*\" no longer reaches what is outside the network: {allowed.Detail}");
        });
    }
}
