using System.Net;
using System.Net.Sockets;
using Egress.Relay;
using Egress.Sockets;
using Egress.Tunnel;

namespace Egress.Tests.Relay;

/// <summary>
/// Where a relay whose last direction ended on an epoll thread finishes, and so where its owner's code after it runs:
/// on the thread pool by default (a library caller's logger may block), on that epoll thread when the options say the
/// process allows it (<see cref="RelayOptions.EndOnEpollThread"/>, both hosts' runtime switch): one thread hand-off
/// fewer per connection.
/// </summary>
[Platform("Linux")]
public sealed class RelayEndThreadTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    [TestCase(false)]
    [TestCase(true)]
    public async Task AFramedRelayFinishesOnTheEpollThreadOnlyWhenAllowed(bool endOnEpollThread)
    {
        using var app = BlockingPair.Connect(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp), new IPEndPoint(IPAddress.Loopback, 0));
        using var tunnel = BlockingPair.Connect(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified), null);
        var options = new RelayOptions { UseSplice = true, EndOnEpollThread = endOnEpollThread };
        Task<RelayResult> relay = SocketRelay.RunFramedAsync(
            app.Right, tunnel.Left, RelaySide.B, ReadOnlyMemory<byte>.Empty, ReadOnlyMemory<byte>.Empty, options, gate: null, CancellationToken.None);
        Task<bool> finishedOnEpollThread = FinishedOnEpollThreadAsync(relay); // its continuation is registered now

        // The application's direction ends first (its FIN goes out as END(FIN)); the tunnel's END(FIN) then ends the
        // other, woken on an epoll thread: the relay's last direction ends there.
        app.Left.Shutdown(SocketShutdown.Send);
        var (_, cause) = await Frames.ReadUntilEndAsync(tunnel.Right).WaitAsync(Guard);
        Assert.That(cause, Is.EqualTo(TunnelEndCause.Fin));
        Assume.That(relay.IsCompleted, Is.False, "the tunnel's direction still runs");
        tunnel.Right.Send(Frames.End(TunnelEndCause.Fin));

        Assert.Multiple(async () =>
        {
            Assert.That(await finishedOnEpollThread.WaitAsync(Guard), Is.EqualTo(endOnEpollThread));
            Assert.That((await relay).Framed?.IsClean, Is.True, "both directions ended with END(FIN)");
        });
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task ARawRelayFinishesOnTheEpollThreadOnlyWhenAllowed(bool endOnEpollThread)
    {
        using var a = BlockingPair.Connect(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp), new IPEndPoint(IPAddress.Loopback, 0));
        using var b = BlockingPair.Connect(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified), null);
        var options = new RelayOptions { UseSplice = true, EndOnEpollThread = endOnEpollThread };
        Task<RelayResult> relay = SocketRelay.RunAsync(a.Right, b.Left, options, CancellationToken.None);
        Task<bool> finishedOnEpollThread = FinishedOnEpollThreadAsync(relay);

        a.Left.Shutdown(SocketShutdown.Send);
        Assert.That(await b.Right.ReceiveAsync(new byte[1].AsMemory(), SocketFlags.None).AsTask().WaitAsync(Guard), Is.Zero, "A's FIN reached B's peer");
        Assume.That(relay.IsCompleted, Is.False, "B to A still runs");
        b.Right.Shutdown(SocketShutdown.Send);

        Assert.Multiple(async () =>
        {
            Assert.That(await finishedOnEpollThread.WaitAsync(Guard), Is.EqualTo(endOnEpollThread));
            Assert.That((await relay).FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
        });
    }

    /// <summary>Where the code after the relay runs: an await's continuation runs on the thread that completes the task.</summary>
    private static async Task<bool> FinishedOnEpollThreadAsync(Task<RelayResult> relay)
    {
        await relay.ConfigureAwait(false);
        return SocketReadiness.OnEpollThread;
    }
}
