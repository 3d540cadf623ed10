using System.Net;
using System.Net.Sockets;
using Egress.Gateway;
using Egress.Tunnel;

namespace Egress.Tests.Gateway;

/// <summary>
/// The parent's outbound sockets, read back from the kernel on a real loopback connection: Nagle off, urgent data in
/// line, an IPv4-mapped destination dialled over IPv4, and the keepalive defaults (set later: <see cref="DeferredKeepAlive"/>).
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
    public async Task AnOutboundSocketHasNoDelayAndUrgentDataInLineAndNoKeepAliveYet()
    {
        var (socket, status, detail) = await DestinationDialer.ConnectAsync(
            (IPEndPoint)_listener.LocalEndPoint!, TimeSpan.FromSeconds(5), TimeProvider.System, CancellationToken.None);
        using var dialed = socket;

        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(TunnelStatus.Ok), detail);
            Assert.That(dialed!.NoDelay, Is.True);
            Assert.That((int)dialed.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.OutOfBandInline)!, Is.Not.Zero, "SO_OOBINLINE");
            Assert.That((int)dialed.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive)!, Is.Zero,
                "keepalive comes a second later, from DeferredKeepAlive, for a connection that lives that long");
        });
    }

    /// <summary>egress-host killed while relaying: the kernel closes what the process held, and a destination that
    /// reads until the end of stream (an upload without a length) must see a reset, not a complete upload. A relay that
    /// ended closes it with FIN (<see cref="Egress.Sockets.SocketReset.CloseGracefully"/>, as RelayedStream does).</summary>
    [Test]
    public async Task AnOutboundSocketClosedWithoutItsRelayResetsTheDestinationAndOneClosedGracefullySendsFin([Values] bool graceful)
    {
        var (socket, status, detail) = await DestinationDialer.ConnectAsync(
            (IPEndPoint)_listener.LocalEndPoint!, TimeSpan.FromSeconds(5), TimeProvider.System, CancellationToken.None);
        Assert.That(status, Is.EqualTo(TunnelStatus.Ok), detail);
        using Socket accepted = await _listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(30));
        var linger = (LingerOption)socket!.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Linger)!;
        Assert.That((linger.Enabled, linger.LingerTime), Is.EqualTo((true, 0)), "SO_LINGER 0 while relaying");

        if (graceful)
        {
            Egress.Sockets.SocketReset.CloseGracefully(socket);
        }
        else
        {
            socket.Dispose(); // what the kernel does with the process's descriptors when it dies
        }

        SocketError error = SocketError.Success;
        int read = -1;
        try
        {
            read = await accepted.ReceiveAsync(new byte[16], SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (SocketException ex)
        {
            error = ex.SocketErrorCode;
        }

        Assert.That((read, error), Is.EqualTo(graceful ? (0, SocketError.Success) : (-1, SocketError.ConnectionReset)));
    }

    [Test]
    public async Task AnIPv4MappedDestinationIsDialledOverIPv4()
    {
        // The red-team trial: a tunnel request for ::ffff:198.18.0.10 (which the policy decides as the IPv4 address) was
        // allowed, then dialled on an IPv6-only socket and answered Unreachable ("Network is unreachable").
        var ipv4 = (IPEndPoint)_listener.LocalEndPoint!;
        var mapped = new IPEndPoint(ipv4.Address.MapToIPv6(), ipv4.Port);

        var (socket, status, detail) = await DestinationDialer.ConnectAsync(
            mapped, TimeSpan.FromSeconds(5), TimeProvider.System, CancellationToken.None);
        using var dialed = socket;
        Assert.That(status, Is.EqualTo(TunnelStatus.Ok), detail);
        using Socket accepted = await _listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(30));

        // The runtime does not see the dialer's own connect (no RemoteEndPoint): the accepted side tells where it went.
        Assert.Multiple(() =>
        {
            Assert.That(dialed!.AddressFamily, Is.EqualTo(AddressFamily.InterNetwork));
            Assert.That(accepted.LocalEndPoint, Is.EqualTo(ipv4));
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
