using System.Net;
using System.Net.Sockets;
using Egress.Gateway;
using Egress.Tunnel;

namespace Egress.Tests.Gateway;

/// <summary>
/// The parent's outbound sockets carry the configured TCP keepalive (read back from the kernel on a real loopback
/// connection), and none when it is off.
/// </summary>
public sealed class DestinationDialerTests
{
    private Socket _listener = null!;

    [SetUp]
    public void SetUp()
    {
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen();
    }

    [TearDown]
    public void TearDown() => _listener.Dispose();

    [Test]
    public async Task OutboundSocketHasTheConfiguredKeepAlive()
    {
        var keepAlive = new TcpKeepAlive(TimeSpan.FromSeconds(7), TimeSpan.FromSeconds(3), 4);

        var (socket, status, detail) = await DestinationDialer.ConnectAsync(
            (IPEndPoint)_listener.LocalEndPoint!, TimeSpan.FromSeconds(5), keepAlive, TimeProvider.System, CancellationToken.None);
        using var dialed = socket;

        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(TunnelStatus.Ok), detail);
            Assert.That((int)dialed!.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive)!, Is.Not.Zero, "SO_KEEPALIVE");
            Assert.That(dialed.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime), Is.EqualTo(7), "TCP_KEEPIDLE");
            Assert.That(dialed.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval), Is.EqualTo(3), "TCP_KEEPINTVL");
            Assert.That(dialed.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount), Is.EqualTo(4), "TCP_KEEPCNT");
            Assert.That(dialed.NoDelay, Is.True);
        });
    }

    [Test]
    public async Task ZeroIdleLeavesKeepAliveOff()
    {
        var (socket, status, detail) = await DestinationDialer.ConnectAsync(
            (IPEndPoint)_listener.LocalEndPoint!, TimeSpan.FromSeconds(5), TcpKeepAlive.Off, TimeProvider.System, CancellationToken.None);
        using var dialed = socket;

        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(TunnelStatus.Ok), detail);
            Assert.That((int)dialed!.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive)!, Is.Zero, "SO_KEEPALIVE");
        });
    }

    [Test]
    public void GatewayDefaultsDetectADeadPeerBeforeANatGatewayForgetsTheFlow()
    {
        var options = new TunnelGatewayOptions { Listen = TunnelEndpoint.Parse("tcp://127.0.0.1:1") };
        var keepAlive = new TcpKeepAlive(options.KeepAliveIdle, options.KeepAliveInterval, options.KeepAliveProbes);

        Assert.Multiple(() =>
        {
            Assert.That(keepAlive.Enabled, Is.True);
            Assert.That(keepAlive.DeadAfterSeconds, Is.EqualTo(120));
        });
    }
}
