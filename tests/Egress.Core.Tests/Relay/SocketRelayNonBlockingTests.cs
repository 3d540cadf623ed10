using System.Net;
using System.Net.Sockets;
using Egress.Relay;
using Egress.Tests.Sockets;

namespace Egress.Tests.Relay;

/// <summary>
/// A splicing relay puts its sockets in non-blocking mode, except those its owner names as non-blocking already
/// (<see cref="NonBlockingSides"/>: a dialled destination, a tunnel stream connected or relayed before): one
/// ioctl(FIONBIO) less per named socket and connection. The mode is read from /proc/self/fdinfo after the relay's start,
/// which sets it synchronously.
/// </summary>
[Platform("Linux")]
public sealed class SocketRelayNonBlockingTests
{
    [TestCase(0, true, true)]
    [TestCase(1, false, true)]
    [TestCase(2, true, false)]
    [TestCase(3, false, false)]
    public async Task OnlyTheSidesNotNamedAreSetNonBlocking(int named, bool aSet, bool bSet)
    {
        var already = (NonBlockingSides)named; // None, A, B, Both (the enum is internal; a test case's parameter is public)
        // Both sockets start blocking, so a named one that the relay left alone is still blocking.
        using var app = BlockingPair.Connect(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp), new IPEndPoint(IPAddress.Loopback, 0));
        using var tunnel = BlockingPair.Connect(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified), null);
        Assume.That(SocketNativeTests.IsNonBlocking(app.Right) || SocketNativeTests.IsNonBlocking(tunnel.Left), Is.False);

        var session = new SocketRelaySession(app.Right, tunnel.Left, RelaySide.B, new RelayOptions { UseSplice = true }, already);
        Task<RelayResult> relay = session.RunAsync(ReadOnlyMemory<byte>.Empty, ReadOnlyMemory<byte>.Empty, CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(SocketNativeTests.IsNonBlocking(app.Right), Is.EqualTo(aSet), "side A");
            Assert.That(SocketNativeTests.IsNonBlocking(tunnel.Left), Is.EqualTo(bSet), "side B");
        });

        app.Left.Dispose(); // the relay ends: the application's FIN, then the tunnel closes without an END
        tunnel.Right.Dispose();
        await relay.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Test]
    public async Task WithoutSplicingNeitherModeChanges()
    {
        using var app = BlockingPair.Connect(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp), new IPEndPoint(IPAddress.Loopback, 0));
        using var tunnel = BlockingPair.Connect(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified), null);
        var session = new SocketRelaySession(app.Right, tunnel.Left, RelaySide.B, new RelayOptions { UseSplice = false }, NonBlockingSides.None);
        Task<RelayResult> relay = session.RunAsync(ReadOnlyMemory<byte>.Empty, ReadOnlyMemory<byte>.Empty, CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(SocketNativeTests.IsNonBlocking(app.Right), Is.False, "side A");
            Assert.That(SocketNativeTests.IsNonBlocking(tunnel.Left), Is.False, "side B");
        });

        app.Left.Dispose();
        tunnel.Right.Dispose();
        await relay.WaitAsync(TimeSpan.FromSeconds(30));
    }
}
