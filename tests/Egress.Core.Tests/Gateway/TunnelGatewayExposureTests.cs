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
        using var logs = new LogCapture();
        var listen = TunnelEndpoint.Parse($"tcp://{address}:{FreePort()}");
        await using var gateway = new TunnelGateway(
            new TunnelGatewayOptions { Listen = listen },
            EgressPolicy.Create(enabled: true, destinations: [], new AllowlistCache()),
            logs.Factory);

        gateway.Start();
        await gateway.StopAsync();

        Assert.That(logs.EventIds.Contains(UnauthenticatedTcpTunnel), Is.EqualTo(warned), string.Join(", ", logs.EventIds));
    }

    /// <summary>A library-consumer trial: a TCP port in use was a bare SocketException "Address already in use", where
    /// Start's documentation promised an IOException naming the endpoint (as the hosted path already said it).</summary>
    [Test]
    public async Task ATcpPortInUseIsAnIOExceptionThatNamesTheEndpointAndTheStartMayBeTriedAgain()
    {
        using var occupant = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        occupant.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        occupant.Listen();
        var listen = TunnelEndpoint.Parse($"tcp://127.0.0.1:{((IPEndPoint)occupant.LocalEndPoint!).Port}");
        using var logs = new LogCapture();
        await using var gateway = new TunnelGateway(
            new TunnelGatewayOptions { Listen = listen },
            EgressPolicy.Create(enabled: true, destinations: [], new AllowlistCache()),
            logs.Factory);

        var error = Assert.Throws<IOException>(gateway.Start)!;
        Assert.That(error.Message, Does.StartWith($"cannot listen on {listen}: ").And.Contain("EADDRINUSE"));
        Assert.That(error.InnerException, Is.InstanceOf<SocketException>());

        occupant.Dispose();
        Assert.That(gateway.Start, Throws.Nothing, "nothing stays bound after a failed start");
        await gateway.StopAsync();
    }

    private static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }
}
