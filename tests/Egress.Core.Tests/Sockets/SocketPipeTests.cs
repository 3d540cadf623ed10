using System.Net;
using System.Net.Sockets;
using Egress.Sockets;
using Pipelines.Sockets.Unofficial;

namespace Egress.Tests.Sockets;

/// <summary>
/// Zero-length reads only where FIONREAD answers: AF_VSOCK on Linux 6.1 answers it with EOPNOTSUPP, and a
/// connection with zero-length reads then failed every DNS tunnel stream. A listening TCP socket stands in for
/// such a socket here (FIONREAD on it is EINVAL), so the fallback is exercised without VSOCK.
/// </summary>
public sealed class SocketPipeTests
{
    [Test]
    public async Task ConnectedSocketGetsZeroLengthReads()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!);

        Assert.That(SocketPipe.ReadOptionsFor(client), Is.EqualTo(SocketConnectionOptions.ZeroLengthReads));
    }

    [Test]
    public void SocketWithoutFionreadGetsPlainReads()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        Assume.That(() => listener.Available, Throws.InstanceOf<SocketException>(), "FIONREAD on a listening socket fails on Linux");

        Assert.That(SocketPipe.ReadOptionsFor(listener), Is.EqualTo(SocketConnectionOptions.None));
    }
}
