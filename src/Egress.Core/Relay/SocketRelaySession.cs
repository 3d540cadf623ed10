using System.Net.Sockets;
using Egress.Sockets;

namespace Egress.Relay;

/// <summary>
/// One running <see cref="SocketRelay"/>: two direction loops and their <see cref="RelayMonitor"/>. A direction moves
/// bytes with splice(2) through a kernel pipe (<see cref="RelayOptions.UseSplice"/>, on Linux) or copies them through a
/// pooled buffer. For a version 2 tunnel stream one side is <em>framed</em> (<see cref="FramedSide"/>): bytes from the
/// other side go to it as DATA frames and its DATA frames go to the other side, and each direction ends with an END
/// frame carrying its cause (SocketRelaySession.Framed.cs).
/// </summary>
internal sealed partial class SocketRelaySession : IRelayAbort
{
    private readonly Socket _a;
    private readonly Socket _b;
    private readonly RelayMonitor _monitor;
    private readonly bool _splice;
    private readonly Func<SplicePipe?> _rentPipe;
    private readonly TimeProvider _time;
    private readonly NonBlockingSides _alreadyNonBlocking;
    private readonly bool _endOnEpollThread;
    private bool _nonBlocking;

    public SocketRelaySession(Socket a, Socket b, RelayOptions options)
        : this(a, b, options, SplicePipe.TryRent)
    {
    }

    /// <summary>A relay whose side <paramref name="framed"/> is a version 2 tunnel stream; the sockets in
    /// <paramref name="alreadyNonBlocking"/> are not set to non-blocking mode again.</summary>
    public SocketRelaySession(Socket a, Socket b, RelaySide framed, RelayOptions options, NonBlockingSides alreadyNonBlocking = NonBlockingSides.None)
        : this(a, b, options, SplicePipe.TryRent, framed, alreadyNonBlocking)
    {
    }

    /// <param name="a">One side.</param>
    /// <param name="b">The other side.</param>
    /// <param name="options">Idle timeout, clock, splicing.</param>
    /// <param name="rentPipe">Where a splicing direction gets its pipe; null means none can be had (it copies instead).</param>
    /// <param name="framed">The side that is a version 2 tunnel stream; null: neither (raw bytes both ways).</param>
    /// <param name="alreadyNonBlocking">The sockets whose owner already made them non-blocking (<see cref="CanSplice"/> skips them).</param>
    internal SocketRelaySession(
        Socket a, Socket b, RelayOptions options, Func<SplicePipe?> rentPipe, RelaySide? framed = null, NonBlockingSides alreadyNonBlocking = NonBlockingSides.None)
    {
        _alreadyNonBlocking = alreadyNonBlocking;
        _a = a;
        _b = b;
        FramedSide = framed;
        _monitor = new RelayMonitor(options, this);
        _splice = options.UseSplice && OperatingSystem.IsLinux();
        _rentPipe = rentPipe;
        _time = options.TimeProvider;
        _endOnEpollThread = options.EndOnEpollThread;
    }

    /// <summary>The side that carries version 2 frames, or null for a raw relay.</summary>
    internal RelaySide? FramedSide { get; }

    /// <summary>A's bytes that went to the tunnel (B) before the relay started (egress-enclave's early data).</summary>
    internal ForwardedEarly ForwardedFromA { get; init; }

    /// <summary>Bytes that went socket to socket through a kernel pipe, A to B and B to A (the rest was copied).</summary>
    internal long SplicedAToB { get; private set; }

    /// <inheritdoc cref="SplicedAToB"/>
    internal long SplicedBToA { get; private set; }

    /// <remarks>Not itself async: the relay's task is its framed or raw run's, so an idle relay holds one state machine
    /// fewer.</remarks>
    public Task<RelayResult> RunAsync(
        ReadOnlyMemory<byte> readFromA, ReadOnlyMemory<byte> readFromB, CancellationToken cancellationToken, IFirstBytesGate? gate = null)
    {
        _monitor.Start(cancellationToken);
        bool splice = _splice && CanSplice();
        return FramedSide is { } framed
            ? RunFramedAsync(framed, readFromA, readFromB, splice, gate, cancellationToken)
            : RunRawAsync(readFromA, readFromB, splice, gate, cancellationToken);
    }

    /// <summary>Both directions of a raw (unframed) relay.</summary>
    private async Task<RelayResult> RunRawAsync(
        ReadOnlyMemory<byte> readFromA, ReadOnlyMemory<byte> readFromB, bool splice, IFirstBytesGate? gate, CancellationToken cancellationToken)
    {
        Task<long> forward = gate is not null ? GatedForwardAsync(gate, readFromA, splice, cancellationToken)
            : splice ? SpliceAsync(_a, _b, readFromA, fromA: true) : CopyAsync(_a, _b, readFromA, fromA: true);
        Task<long> backward = splice ? SpliceAsync(_b, _a, readFromB, fromA: false) : CopyAsync(_b, _a, readFromB, fromA: false);
        long aToB = await forward.ConfigureAwait(false); // the direction loops never throw
        long bToA = await backward.ConfigureAwait(false);
        // The relay's end and its owner's code (logging, closing, an audit record, the next request) run on the thread
        // pool, never on an epoll thread, where a blocked write would stall every relay that thread serves. Only here,
        // where the last direction ended: a direction's own end (its END frame) neither blocks nor closes a socket a
        // wait holds, so the direction that ends first stays on the epoll thread: one hand-off per connection, not one
        // per direction. Unless the process says its code after a relay may run there (RelayOptions.EndOnEpollThread)
        // and nothing aborted the relay: an abort's end (the monitor's Finish waits for a running stop callback, which
        // resets sockets) stays off the epoll threads.
        await SocketReadiness.LeaveEpollThreadUnless(_endOnEpollThread && !_monitor.IsAborted);

        return _monitor.Finish(aToB, bToA);
    }

    /// <summary>
    /// A direction loop failed: records which side failed and how (unless the relay was already aborted, which is what
    /// made the loop fail), and aborts both directions.
    /// </summary>
    private void AbortOnError(Exception error, bool receiving, bool fromA)
    {
        if (!_monitor.IsAborted)
        {
            RelayShutdownCause cause = receiving
                ? fromA ? RelayShutdownCause.AReadError : RelayShutdownCause.BReadError
                : fromA ? RelayShutdownCause.BWriteError : RelayShutdownCause.AWriteError;
            _monitor.Abort(cause, error);
        }
    }

    /// <summary>
    /// Puts both sockets in non-blocking mode, which splice needs: a TCP socket waits in splice according to its own
    /// mode, not the splice flags, and a socket only becomes non-blocking by itself on its first asynchronous operation.
    /// A socket its owner already made non-blocking (<see cref="NonBlockingSides"/>: a dialled destination, a tunnel stream
    /// connected or relayed before) costs no call.
    /// </summary>
    /// <returns>False if a socket is already closed (the copy loops then report it).</returns>
    private bool CanSplice()
    {
        try
        {
            if (OperatingSystem.IsLinux())
            {
                // Our own ioctl, not Socket.Blocking: setting that gives each socket the runtime's asynchronous context
                // (SocketNative), which an idle connection would hold for its life.
                if ((_alreadyNonBlocking & NonBlockingSides.A) == 0)
                {
                    SocketNative.SetNonBlocking(_a.SafeHandle, true);
                }

                if ((_alreadyNonBlocking & NonBlockingSides.B) == 0)
                {
                    SocketNative.SetNonBlocking(_b.SafeHandle, true);
                }
            }
            else
            {
                _a.Blocking = false;
                _b.Blocking = false;
            }

            _nonBlocking = true;
            return true;
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
        {
            return false;
        }
    }

    /// <summary>
    /// Sends what <paramref name="socket"/> takes now, without waiting, when both sockets are in non-blocking mode
    /// (<see cref="CanSplice"/>): a direction whose destination has room then never uses the socket's asynchronous send,
    /// whose event args the socket would keep for the rest of the connection (<see cref="SocketSendNow"/>). The caller
    /// sends the rest, if any, asynchronously.
    /// </summary>
    /// <returns>Bytes sent: 0 when the socket has no room, or is in blocking mode (nothing is tried).</returns>
    /// <exception cref="SocketException">The send failed (e.g. ECONNRESET, EPIPE), as the asynchronous send would have.</exception>
    private int SendNow(Socket socket, ReadOnlySpan<byte> bytes) =>
        _nonBlocking || OperatingSystem.IsLinux() ? SocketSendNow.NonBlocking(socket, bytes) : 0;

    /// <summary>shutdown(SHUT_WR); ENOTCONN (the connection already ended) is ignored, as the runtime ignores it for a
    /// socket it connected or accepted, also for one connected by our own connect(2), which the runtime does not see.</summary>
    internal static void ShutdownSend(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.NotConnected)
        {
        }
    }

    /// <summary>The abort (called once by the monitor): framed, <see cref="AbortFramed"/>; raw, <see cref="ResetBoth"/>.
    /// On the epoll thread (a direction loop woken inline) it is handed to the thread pool: closing a socket that the
    /// other direction waits on waits for the epoll thread (<see cref="SocketReadiness.WaitReadableInlineAsync(Socket, bool)"/>).</summary>
    void IRelayAbort.Abort(RelayShutdownCause cause, Exception? error)
    {
        if (FramedSide is not null)
        {
            // Decided now, not when the resets run: the loop that failed sends its END right after this returns.
            Interlocked.CompareExchange(ref _abortEnd, (int)EndCauseFor(cause, error), NoEnd);
        }

        if (SocketReadiness.OnEpollThread)
        {
            ThreadPool.UnsafeQueueUserWorkItem(
                static state => state.Session.AbortNow(state.Cause, state.Error), (Session: this, Cause: cause, Error: error), preferLocal: false);
            return;
        }

        AbortNow(cause, error);
    }

    private void AbortNow(RelayShutdownCause cause, Exception? error)
    {
        if (FramedSide is null)
        {
            ResetBoth();
        }
        else
        {
            AbortFramed(cause, error);
        }
    }

    /// <summary>The raw abort: resetting both sockets ends both direction loops (their pending operations fail).</summary>
    private void ResetBoth()
    {
        SocketReset.Reset(_a);
        SocketReset.Reset(_b);
    }
}
