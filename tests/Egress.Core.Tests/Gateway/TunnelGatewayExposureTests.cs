using System.Net;
using System.Net.Sockets;
using Egress.Gateway;
using Egress.Policy;
using Egress.Tunnel;

namespace Egress.Tests.Gateway;

/// <summary>A TCP tunnel has no authentication: listening on anything but loopback is warned about at start.</summary>
public sealed class TunnelGatewayExposureTests
{
    private const int UnauthenticatedTcpTunnel = 215;

    [TestCase("0.0.0.0", true)]
    [TestCase("127.0.0.1", false)]
    public async Task ATcpTunnelOffLoopbackIsWarnedAbout(string address, bool warned)
    {
        var logs = new LogCapture();
        var listen = TunnelEndpoint.Parse($"tcp://{address}:{FreePort()}");
        await using var gateway = new TunnelGateway(
            new TunnelGatewayOptions { Listen = listen },
            EgressPolicy.Create(enabled: true, destinations: [], new AllowlistCache()),
            logs.Factory);

        gateway.Start();
        await gateway.StopAsync();

        Assert.That(logs.EventIds.Contains(UnauthenticatedTcpTunnel), Is.EqualTo(warned), string.Join(", ", logs.EventIds));
    }

    private static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }
}
