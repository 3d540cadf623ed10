using System.Buffers;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using Egress.Sockets;
using Egress.Tunnel;

namespace Egress.Relay;

/// <summary>
/// The framed direction loops of a version 2 tunnel stream (docs/tunnel-protocol.md, "Version 2"). The encoder moves
/// the plain socket's bytes into the tunnel as DATA frames (with splice: fill the kernel pipe from the socket, learn n,
/// write the 4-byte header, splice the n bytes on) and ends its direction with one END frame: FIN at end of stream,
/// otherwise the abort's cause. The decoder moves DATA payloads to the plain socket (splicing exactly the frame's
/// length) and acts on the END frame: FIN shuts the plain socket's send side down (half-close), any other cause resets
/// it (SO_LINGER 0), so the application sees ECONNRESET where the far side did. A tunnel that ends or fails before its
/// END frame is an abort, never a clean end.
/// </summary>
/// <remarks>
/// An abort resets the plain socket at once but not the tunnel: the encoder still writes its END frame, and the
/// decoder reads (and discards) until the peer's END, so both sides learn the cause. <see cref="EndDrainTimeout"/>
/// bounds that wait: then the tunnel is reset too.
/// </remarks>
internal sealed partial class SocketRelaySession
{
    /// <summary>How long an aborted framed relay waits for the END frames to be written and read before it resets the tunnel.</summary>
    internal static readonly TimeSpan EndDrainTimeout = TimeSpan.FromSeconds(2);

    /// <summary>How long a received END(Reset) waits for the bytes before it to reach the plain socket's peer (below
    /// the far side's <see cref="EndDrainTimeout"/>).</summary>
    internal static readonly TimeSpan ResetDeliveryTimeout = TimeSpan.FromSeconds(1);

    private static readonly TimeSpan ResetDeliveryPoll = TimeSpan.FromMilliseconds(5);

    private const int NoEnd = -1;

    private int _sentEnd = NoEnd;
    private int _receivedEnd = NoEnd;
    private int _abortEnd = NoEnd;
    private int _finished;
    private ITimer? _drainTimer;
    private ReadOnlyMemory<byte> _afterEnd;
    private int _drainWaits;
    private int _endsWithData;
    private DeferredAbort? _deferred;
    private ITimer? _deferTimer;
    private int _readersEnded;
    private int _plainWriting;

    /// <summary>The direction that reads the plain socket (the encoder), or the tunnel (the decoder): bits of
    /// <see cref="_readersEnded"/> and the socket a deferred abort's failed write went to.</summary>
    private const int PlainReader = 1;
    private const int TunnelReader = 2;

    /// <summary>An abort held back because a write failed on its peer's reset (<see cref="DeferAbort"/>).</summary>
    private sealed record DeferredAbort(int Socket, RelayShutdownCause Cause, Exception Error);

    /// <summary>How many times a framed direction sent part of its pipe through user space (the destination was full, or
    /// cannot splice): the waits the allocation tests count.</summary>
    internal int DrainWaits => Volatile.Read(ref _drainWaits);

    /// <summary>How many END(FIN) frames went out in one send with the direction's last DATA frame (0 or 1 per
    /// direction; only the encoder of a plain socket can): what the tests of that coalescing count.</summary>
    internal int EndsSentWithData => Volatile.Read(ref _endsWithData);

    private Socket Tunnel => FramedSide == RelaySide.A ? _a : _b;

    private Socket Plain => FramedSide == RelaySide.A ? _b : _a;

    /// <summary>Whether <paramref name="error"/> is the peer resetting the connection (ECONNRESET, ECONNABORTED).</summary>
    internal static bool IsReset(Exception? error) => error switch
    {
        SocketException socket => socket.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted,
        IOException { InnerException: SocketException inner } => IsReset(inner),
        _ => false,
    };

    /// <summary>
    /// Whether the end of stream the encoder just read from <paramref name="source"/> (the plain socket) is its peer's
    /// reset that a write took. The kernel reports a reset once: when the decoder's write to the same socket is in
    /// progress (waiting for room, or failed and not yet handled, <see cref="_plainWriting"/>), it may take the
    /// ECONNRESET, and this direction's receive then reads end of stream, as after a FIN. Sending END(FIN) for it made a
    /// cut-off transfer look complete. The decoder has not shut the socket's send side down then (it is still writing),
    /// so a connection in TCP_CLOSE was reset; a FIN leaves it in CLOSE_WAIT. One getsockopt(2), only in that case.
    /// </summary>
    private bool EndOfStreamIsAReset(Socket source) =>
        Volatile.Read(ref _plainWriting) != 0 && TcpConnectionState.IsClosed(source);

    /// <summary>The decoder's write to the plain socket begins (true) or has ended, its failure handled (false):
    /// what <see cref="EndOfStreamIsAReset"/> reads.</summary>
    private void PlainWriting(bool writing) => Volatile.Write(ref _plainWriting, writing ? 1 : 0);

    /// <summary>Whether a write failed because the socket's peer is gone: it reset the connection (ECONNRESET,
    /// ECONNABORTED) or the connection is already closed by it (EPIPE). Reading that socket then never waits: what it
    /// received before is read first, then the error or the end of stream.</summary>
    internal static bool IsPeerGone(Exception? error) => error switch
    {
        SocketException socket => socket.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted or SocketError.Shutdown,
        IOException { InnerException: SocketException inner } => IsPeerGone(inner),
        _ => false,
    };

    /// <summary>The END cause an aborted relay sends for the first cause <paramref name="cause"/>.</summary>
    internal static TunnelEndCause EndCauseFor(RelayShutdownCause cause, Exception? error) => cause switch
    {
        RelayShutdownCause.IdleTimeout or RelayShutdownCause.HalfClosedTimeout => TunnelEndCause.IdleTimeout,
        RelayShutdownCause.Cancelled => TunnelEndCause.Stopping,
        RelayShutdownCause.Refused => TunnelEndCause.Refused,
        _ when IsReset(error) => TunnelEndCause.Reset,
        _ => TunnelEndCause.Error,
    };

    /// <summary>Starts both framed directions; not itself async, so the waiting state machine
    /// (<see cref="FinishFramedAsync"/>) holds only the two loops, not this method's arguments.</summary>
    private Task<RelayResult> RunFramedAsync(
        RelaySide framed, ReadOnlyMemory<byte> readFromA, ReadOnlyMemory<byte> readFromB, bool splice, IFirstBytesGate? gate, CancellationToken cancellationToken)
    {
        Task<long> forward = framed == RelaySide.B
            ? gate is null ? EncodeAsync(_a, _b, readFromA, fromA: true, splice) : GatedEncodeAsync(gate, readFromA, splice, cancellationToken)
            : gate is null ? DecodeAsync(_a, _b, readFromA, fromA: true, splice) : GatedDecodeAsync(gate, readFromA, splice, cancellationToken);
        Task<long> backward = framed == RelaySide.B
            ? DecodeAsync(_b, _a, readFromB, fromA: false, splice)
            : EncodeAsync(_b, _a, readFromB, fromA: false, splice);
        return FinishFramedAsync(forward, backward);
    }

    /// <summary>Waits for both framed directions and builds the result with the END frames.</summary>
    private async Task<RelayResult> FinishFramedAsync(Task<long> forward, Task<long> backward)
    {
        long aToB = await forward.ConfigureAwait(false); // the direction loops never throw
        long bToA = await backward.ConfigureAwait(false);
        // The relay's end and its owner's code run on the thread pool, or stay on the epoll thread after a clean end
        // where the process allows it (RunRawAsync says why).
        await SocketReadiness.LeaveEpollThreadUnless(_endOnEpollThread && !_monitor.IsAborted);

        Volatile.Write(ref _finished, 1);
        Volatile.Read(ref _drainTimer)?.Dispose();
        Volatile.Read(ref _deferTimer)?.Dispose();
        RelayResult result = _monitor.Finish(aToB, bToA);
        return result with { Framed = new FramedStreamEnd(EndOf(_sentEnd), EndOf(_receivedEnd)), TunnelAfterEnd = _afterEnd };
    }

    /// <summary>
    /// A received END(Reset) is the far side's peer resetting its connection. Directly, what that peer sent before its
    /// RST would be in this peer's receive buffer, read before ECONNRESET; here it may still be in the plain socket's
    /// send queue, which the reset (SO_LINGER 0) discards. So wait until the plain socket's peer has taken it, up to
    /// <see cref="ResetDeliveryTimeout"/> (an app that does not read within it loses the rest, and the far side, waiting
    /// for this side's END, resets the tunnel after <see cref="EndDrainTimeout"/>).
    /// </summary>
    private async Task DeliverBeforeResetAsync(Socket destination)
    {
        long start = _time.GetTimestamp();
        while (SocketSendQueue.Pending(destination) > 0 && !_monitor.IsAborted && _time.GetElapsedTime(start) < ResetDeliveryTimeout)
        {
            await Task.Delay(ResetDeliveryPoll, _time).ConfigureAwait(false);
        }
    }

    private static TunnelEndCause? EndOf(int value) => value == NoEnd ? null : (TunnelEndCause)value;

    /// <summary>
    /// A write to the plain socket (<paramref name="socket"/> = <see cref="PlainReader"/>) or to the tunnel
    /// (<see cref="TunnelReader"/>) failed: when that is its peer's reset and the direction that reads the same socket is
    /// still running, the abort waits until that direction has forwarded what the socket had already received, and
    /// returns true. Directly, those bytes (a destination's answer before its RST, the parent's last frames before it
    /// reset the tunnel) wait in the application's receive buffer and are read before the error; resetting the plain
    /// socket at once threw them away (an HTTP 413 answer to an upload went missing). The reading direction ends soon:
    /// a socket whose peer is gone never blocks a read. It is bounded anyway by <see cref="EndDrainTimeout"/>, the wait
    /// of an abort for the END frames (an application that reads nothing in that time loses the rest, as at END(Reset)).
    /// </summary>
    private bool DeferAbort(Exception error, bool fromA, int socket)
    {
        if (_monitor.IsAborted || !IsPeerGone(error) || (Volatile.Read(ref _readersEnded) & socket) != 0)
        {
            return false;
        }

        RelayShutdownCause cause = fromA ? RelayShutdownCause.BWriteError : RelayShutdownCause.AWriteError;
        if (Interlocked.CompareExchange(ref _deferred, new DeferredAbort(socket, cause, error), null) is not null)
        {
            return false;
        }

        ITimer timer = _time.CreateTimer(static state => ((SocketRelaySession)state!).AbortDeferred(), this, EndDrainTimeout, Timeout.InfiniteTimeSpan);
        Volatile.Write(ref _deferTimer, timer);
        if (Volatile.Read(ref _finished) != 0)
        {
            timer.Dispose();
        }

        if ((Volatile.Read(ref _readersEnded) & socket) != 0)
        {
            AbortDeferred(); // the reader ended meanwhile: it may not have seen the deferral
        }

        return true;
    }

    /// <summary>The direction that reads <paramref name="socket"/> ended: a deferred abort for that socket goes ahead.</summary>
    private void ReaderEnded(int socket)
    {
        Interlocked.Or(ref _readersEnded, socket);
        if (Volatile.Read(ref _deferred) is { } deferred && deferred.Socket == socket)
        {
            AbortDeferred();
        }
    }

    /// <summary>Whether an abort waits for the direction that reads <paramref name="socket"/>.</summary>
    private bool AbortDeferredFor(int socket) => Volatile.Read(ref _deferred) is { } deferred && deferred.Socket == socket;

    private void AbortDeferred()
    {
        if (Volatile.Read(ref _deferred) is { } deferred)
        {
            _monitor.Abort(deferred.Cause, deferred.Error);
        }
    }

    /// <summary>
    /// The framed abort: remembers the END cause to send (unless the END that caused the abort set it), resets the
    /// plain socket, and resets the tunnel only if the END frames have not been exchanged within <see cref="EndDrainTimeout"/>;
    /// as soon as the far side has taken what was queued on it (<see cref="ResetTunnelWhenTakenAsync"/>) when this side's
    /// END already went out as FIN and the far side's has not come.
    /// </summary>
    /// <remarks>
    /// This side's END is out when its direction ended first with FIN (a destination that closed, then reset when the
    /// app wrote on). No END frame is left to carry the abort's cause, and the far side's END comes only when its own
    /// socket ends: until then it would go on relaying bytes that are discarded here, and its application's writes
    /// would all succeed. Resetting the tunnel fails the far side's next write to it, which resets its socket, as the
    /// RST fails a direct application's next write.
    /// </remarks>
    private void AbortFramed(RelayShutdownCause cause, Exception? error)
    {
        Interlocked.CompareExchange(ref _abortEnd, (int)EndCauseFor(cause, error), NoEnd);
        SocketReset.Reset(Plain);
        if (Volatile.Read(ref _sentEnd) == (int)TunnelEndCause.Fin && Volatile.Read(ref _receivedEnd) == NoEnd)
        {
            _ = ResetTunnelWhenTakenAsync();
            return;
        }

        ITimer timer = _time.CreateTimer(
            static state => ((SocketRelaySession)state!).DrainExpired(), this, EndDrainTimeout, Timeout.InfiniteTimeSpan);
        Volatile.Write(ref _drainTimer, timer);
        if (Volatile.Read(ref _finished) != 0)
        {
            timer.Dispose();
        }
    }

    /// <summary>
    /// Resets the tunnel once the far side has taken what this side queued on it (its last DATA frames and END(FIN)), at
    /// most <see cref="ResetDeliveryTimeout"/> later. Over TCP (tcp:// endpoints) a reset discards the socket's send
    /// queue, so resetting at once threw away the end of an answer the destination had sent whole, and its FIN: the app
    /// read part of it, then ECONNRESET. A Unix socket's close keeps what its peer has queued, so it waits for nothing
    /// (SIOCOUTQ counts bytes its peer has not read yet there); nor does a VSOCK one (verified on vsock_loopback, Linux
    /// 6.1: after a close with SO_LINGER 0 the peer reads every queued byte, then end of stream; SIOCOUTQ is not
    /// supported there).
    /// </summary>
    private async Task ResetTunnelWhenTakenAsync()
    {
        Socket tunnel = Tunnel;
        if (tunnel.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6)
        {
            long start = _time.GetTimestamp();
            while (SocketSendQueue.Pending(tunnel) > 0 && _time.GetElapsedTime(start) < ResetDeliveryTimeout)
            {
                await Task.Delay(ResetDeliveryPoll, _time).ConfigureAwait(false);
            }
        }

        SocketReset.Reset(tunnel);
    }

    private void DrainExpired()
    {
        if (Volatile.Read(ref _finished) == 0)
        {
            SocketReset.Reset(Tunnel);
        }
    }

    /// <summary>Plain socket to tunnel: DATA frames, then one END frame. Never throws.</summary>
    private async Task<long> EncodeAsync(Socket source, Socket tunnel, ReadOnlyMemory<byte> pending, bool fromA, bool splice)
    {
        long moved = 0;
        long spliced = 0;
        SplicePipe? pipe = null;
        byte[]? buffer = null;
        bool receiving = false;
        bool atBoundary = true; // no frame is half written: an END frame may follow
        bool endOfStream = false;
        try
        {
            if (!pending.IsEmpty)
            {
                atBoundary = false;
                await SendAsDataFramesAsync(tunnel, pending).ConfigureAwait(false);
                atBoundary = true;
                moved += pending.Length;
                pending = default; // sent: the state machine, kept for the connection's life, keeps no reference to its array
                _monitor.Touch();
            }

            bool likelyMore = false;
            bool streaming = false;
            // On the parent the plain socket is the destination, connected just now: it has nothing to read yet (the
            // request has not been relayed; a banner comes a round trip later), so even its first wait skips the poll.
            // In the enclave the application has usually written its first bytes already: the first round reads them
            // at once (one recv(2) where a poll(2) and a recv(2) were), and waits, without a poll and holding no
            // buffer, only when nothing was there.
            bool waited = FramedSide == RelaySide.A;
            bool readFirst = !waited;
            if (fromA && ForwardedFromA.Bytes > 0)
            {
                // Its first bytes went with the request (early data): counted here; when that read left the socket
                // empty, the first round waits (no poll) rather than receive into nothing.
                moved += ForwardedFromA.Bytes;
                readFirst = !ForwardedFromA.SourceDrained;
                waited = ForwardedFromA.SourceDrained;
            }

            while (true)
            {
                if (_monitor.IsAborted)
                {
                    // Aborted (e.g. the gate refused the first flight before this loop began): forward nothing more,
                    // even when the plain socket's reset, handed to the thread pool from an epoll thread, has not
                    // landed yet. The END below carries the abort's cause.
                    break;
                }

                receiving = true;
                bool peerClosed = false; // the wake-up said the source's FIN is queued behind its data (EPOLLRDHUP)
                bool woke = !likelyMore; // this round waited for readiness (or reads first): the source has something to read
                if (!likelyMore && !readFirst)
                {
                    // Wait for data holding neither pipe nor buffer: an idle direction holds none. Every wait but the
                    // first follows a receive or fill that came back short or empty (likelyMore is false), so the
                    // socket had nothing queued: no poll.
                    _ = SocketReadiness.TakeWakeEvents(); // nothing left from an earlier wait on this thread
                    ValueTask ready = SocketReadiness.WaitReadableInlineAsync(source, drained: waited);
                    waited = true;
                    if (!ready.IsCompleted)
                    {
                        if (pipe is not null)
                        {
                            SplicePipe.Return(pipe);
                            pipe = null;
                        }

                        if (buffer is not null)
                        {
                            ArrayPool<byte>.Shared.Return(buffer);
                            buffer = null;
                        }
                    }

                    await ready.ConfigureAwait(false);
                    peerClosed = (SocketReadiness.TakeWakeEvents() & EpollNative.ReadHangUp) != 0;
                }

                if (!splice || (!likelyMore && !streaming))
                {
                    // Copy: the frame header goes in front of the payload in the same buffer, one send for both.
                    int size = splice ? SmallRead : BufferSize;
                    int capacity = TunnelFrames.HeaderLength + size + TunnelFrames.EndFrameLength; // room for an END behind the data
                    if (buffer is not null && buffer.Length < capacity)
                    {
                        ArrayPool<byte>.Shared.Return(buffer); // rented for splicing, which needs less
                        buffer = null;
                    }

                    // Only as large as this read: a splicing direction's 4 KiB copy does not take a 128 KiB array from the
                    // pool, where it would stay (one per thread, more per core) after the direction went idle.
                    buffer ??= ArrayPool<byte>.Shared.Rent(capacity);
                    int got;
                    if (readFirst)
                    {
                        readFirst = false;
                        waited = true; // the next wait follows an empty receive: no poll
                        got = SocketReadiness.ReceiveNow(source, buffer.AsSpan(TunnelFrames.HeaderLength, size));
                        if (got < 0)
                        {
                            continue; // nothing yet: the wait (which gives the buffer back if it has to wait)
                        }
                    }
                    else
                    {
                        got = await SocketReadiness.ReceiveAsync(source, buffer.AsMemory(TunnelFrames.HeaderLength, size)).ConfigureAwait(false);
                    }

                    if (got == 0)
                    {
                        if (EndOfStreamIsAReset(source))
                        {
                            throw new SocketException((int)SocketError.ConnectionReset);
                        }

                        receiving = false;
                        endOfStream = true;
                        break;
                    }

                    // A source that writes its last bytes and closes (a server answering `Connection: close`, an
                    // HTTP/1.0 exchange, a client that half-closes after its request) has its FIN queued behind them
                    // when the wake-up says so: read on once without waiting, and on end of stream send the DATA and
                    // the END frame together. One send and one wake-up of the far side instead of two, and no epoll
                    // round trip here to learn the FIN. Without EPOLLRDHUP nothing extra is read.
                    ExceptionDispatchInfo? failed = null;
                    if (peerClosed && got < size)
                    {
                        try
                        {
                            int more = SocketReadiness.ReceiveNow(source, buffer.AsSpan(TunnelFrames.HeaderLength + got, size - got));
                            if (more == 0 && EndOfStreamIsAReset(source))
                            {
                                throw new SocketException((int)SocketError.ConnectionReset); // captured just below
                            }

                            endOfStream = more == 0;
                            got += Math.Max(0, more);
                        }
                        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                        {
                            // A reset behind the data: the bytes read first still go on, then the error ends the
                            // direction, as the next receive would have (the kernel reports a reset once; a receive
                            // after it reads end of stream, so it is not left for later).
                            failed = ExceptionDispatchInfo.Capture(ex);
                        }
                    }

                    receiving = false; // a send error below is the tunnel's, even with a reset captured
                    _monitor.Touch();
                    TunnelFrames.WriteDataHeader(buffer, got);
                    atBoundary = false;
                    int total = TunnelFrames.HeaderLength + got;
                    bool endWithData = endOfStream && !AbortDeferredFor(PlainReader); // the source's peer reset: never END(FIN)
                    if (endWithData)
                    {
                        total += TunnelFrames.WriteEnd(buffer.AsSpan(total), TunnelEndCause.Fin);
                    }

                    int sent = 0;
                    try
                    {
                        for (sent = SendNow(tunnel, buffer.AsSpan(0, total)); sent < total;)
                        {
                            sent += await tunnel.SendAsync(buffer.AsMemory(sent, total - sent), SocketFlags.None).ConfigureAwait(false);
                        }
                    }
                    catch
                    {
                        moved += Math.Clamp(sent - TunnelFrames.HeaderLength, 0, got); // the payload the tunnel took before the error
                        throw;
                    }

                    atBoundary = true;
                    moved += got;
                    _monitor.Touch();
                    if (failed is not null)
                    {
                        receiving = true;
                        failed.Throw();
                    }

                    if (endWithData)
                    {
                        Volatile.Write(ref _sentEnd, (int)TunnelEndCause.Fin);
                        Interlocked.Increment(ref _endsWithData);
                        break;
                    }

                    if (endOfStream)
                    {
                        break;
                    }

                    if (!splice)
                    {
                        likelyMore = got == size;
                        continue;
                    }

                    if (got < SmallRead)
                    {
                        continue;
                    }

                    receiving = true;
                }

                pipe ??= _rentPipe();
                if (pipe is null)
                {
                    splice = false; // out of descriptors: copy through user space
                    likelyMore = true;
                    continue;
                }

                int read = pipe.FillFrom(source.SafeHandle);
                if (read == SplicePipe.WouldBlock)
                {
                    likelyMore = false;
                    // Readable, yet splice reads nothing: TCP urgent data (MSG_OOB) is next, which splice(2) never
                    // moves past. The next round copies, and its receive steps over the mark (SocketRelaySession.SpliceAsync says more).
                    streaming &= !woke;
                    continue;
                }

                if (read == SplicePipe.Unsupported)
                {
                    splice = false;
                    likelyMore = true;
                    continue;
                }

                if (read == 0)
                {
                    // End of stream, or a TCP urgent mark once the peer's FIN has arrived (splice(2) returns 0 at both):
                    // the next round copies, and its receive reads on past the mark, or reads the end and sends END(FIN)
                    // (SocketRelaySession.SpliceAsync says more).
                    streaming = false;
                    likelyMore = false;
                    continue;
                }

                receiving = false;

                _monitor.Touch();
                atBoundary = false;
                buffer ??= ArrayPool<byte>.Shared.Rent(TunnelFrames.HeaderLength + SmallRead); // the header only
                TunnelFrames.WriteDataHeader(buffer, read);
                for (int sent = SendNow(tunnel, buffer.AsSpan(0, TunnelFrames.HeaderLength)); sent < TunnelFrames.HeaderLength;)
                {
                    sent += await tunnel.SendAsync(buffer.AsMemory(sent, TunnelFrames.HeaderLength - sent), SocketFlags.None).ConfigureAwait(false);
                }

                // Exactly the frame's n bytes are in the pipe.
                PipeDrain drain = await DrainPipeAsync(pipe, tunnel).ConfigureAwait(false);
                moved += drain.Delivered;
                spliced += drain.Spliced;
                drain.Failed?.Throw();
                atBoundary = true;
                _monitor.Touch();
                splice = drain.DestinationSplices;
                likelyMore = read >= SpliceAgainThreshold;
                streaming = read > SmallRead;
            }
        }
        catch (Exception ex)
        {
            if (receiving || !DeferAbort(ex, fromA, TunnelReader))
            {
                AbortOnError(ex, receiving, fromA);
            }
        }
        finally
        {
            if (pipe is not null)
            {
                SplicePipe.Return(pipe);
            }

            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }

            AddSpliced(fromA, spliced);
        }

        if (endOfStream && AbortDeferredFor(PlainReader))
        {
            // The end of stream of a socket whose peer reset it (the write to it failed): what it had received went on
            // above; the direction ends with the reset's cause, never END(FIN).
            endOfStream = false;
            AbortDeferred();
        }

        ReaderEnded(PlainReader);

        // The direction's END: FIN at end of stream, the abort's cause otherwise; none when a frame is half written, or
        // when the END went out with the last DATA frame.
        if (atBoundary && (endOfStream || _monitor.IsAborted) && Volatile.Read(ref _sentEnd) == NoEnd)
        {
            int abortEnd = Volatile.Read(ref _abortEnd);
            TunnelEndCause cause = endOfStream ? TunnelEndCause.Fin : abortEnd == NoEnd ? TunnelEndCause.Error : (TunnelEndCause)abortEnd;
            try
            {
                await SendAllAsync(tunnel, EndFrame(cause)).ConfigureAwait(false);
                Volatile.Write(ref _sentEnd, (int)cause);
            }
            catch (Exception ex)
            {
                AbortOnError(ex, receiving: false, fromA);
            }
        }

        return moved;
    }

    /// <summary>Sends <paramref name="bytes"/> (already read from the plain socket) as DATA frames of at most
    /// <see cref="TunnelFrames.MaxDataLength"/> bytes each. Its own method: the loop's state machine, kept for the
    /// connection's life, holds none of its locals.</summary>
    private static async Task SendAsDataFramesAsync(Socket tunnel, ReadOnlyMemory<byte> bytes)
    {
        for (ReadOnlyMemory<byte> rest = bytes; !rest.IsEmpty;)
        {
            ReadOnlyMemory<byte> part = rest[..Math.Min(rest.Length, TunnelFrames.MaxDataLength)];
            byte[] header = new byte[TunnelFrames.HeaderLength];
            TunnelFrames.WriteDataHeader(header, part.Length);
            await SendAllAsync(tunnel, header).ConfigureAwait(false);
            await SendAllAsync(tunnel, part).ConfigureAwait(false);
            rest = rest[part.Length..];
        }
    }

    /// <summary>Tunnel to plain socket: DATA payloads on, until the END frame. Never throws.</summary>
    private async Task<long> DecodeAsync(Socket tunnel, Socket destination, ReadOnlyMemory<byte> pending, bool fromA, bool splice)
    {
        long moved = 0;
        long spliced = 0;
        SplicePipe? pipe = null;
        int bufferSize = Math.Max(splice ? SmallRead : BufferSize, pending.Length);
        byte[]? buffer = null;
        int start = 0;
        int end = 0;
        if (!pending.IsEmpty)
        {
            buffer = ArrayPool<byte>.Shared.Rent(bufferSize);
            pending.Span.CopyTo(buffer);
            end = pending.Length;
            pending = default; // copied: the state machine, kept for the connection's life, keeps no reference to its array
        }

        long remaining = 0; // payload bytes of the current DATA frame still to move
        bool receiving = false;
        bool streaming = false; // the last DATA frame was large: read the next header alone, then splice its payload
        bool discard = false; // the plain socket is gone (an abort): read on to the END frame, dropping payload
        // The last receive from the tunnel came back short: the next wait needs no poll. So it is at the start: the
        // enclave read the stream to a short receive with the status, and the parent's stream carries nothing before
        // the enclave has the status (its frames follow the status; a reused stream's bytes read early are pending).
        bool drained = true;
        try
        {
            while (true)
            {
                if (remaining == 0)
                {
                    TunnelFrameResult parsed = TunnelFrames.TryReadHeader(buffer.AsSpan(start, end - start), out TunnelFrameHeader frame);
                    if (parsed == TunnelFrameResult.Incomplete)
                    {
                        receiving = true;
                        if (start == end)
                        {
                            start = end = 0;
                            ValueTask ready = SocketReadiness.WaitReadableInlineAsync(tunnel, drained);
                            if (!ready.IsCompleted && buffer is not null)
                            {
                                ArrayPool<byte>.Shared.Return(buffer);
                                buffer = null;
                            }

                            await ready.ConfigureAwait(false);
                        }

                        buffer ??= ArrayPool<byte>.Shared.Rent(bufferSize);
                        if (start > 0)
                        {
                            Buffer.BlockCopy(buffer, start, buffer, 0, end - start);
                            end -= start;
                            start = 0;
                        }

                        int want = streaming ? Math.Max(1, TunnelFrames.HeaderLength - end) : buffer.Length - end;
                        int got = await SocketReadiness.ReceiveAsync(tunnel, buffer.AsMemory(end, want)).ConfigureAwait(false);
                        if (got == 0)
                        {
                            throw new IOException("the tunnel stream ended before its END frame");
                        }

                        drained = got < want;

                        receiving = false;
                        end += got;
                        continue;
                    }

                    if (parsed != TunnelFrameResult.Complete)
                    {
                        Interlocked.CompareExchange(ref _abortEnd, (int)TunnelEndCause.ProtocolError, NoEnd);
                        receiving = true;
                        throw new InvalidDataException($"invalid tunnel frame: {parsed}");
                    }

                    start += frame.Length;
                    _monitor.Touch();
                    if (frame.Type == TunnelFrameType.Data)
                    {
                        remaining = frame.PayloadLength;
                        streaming = remaining > SmallRead;
                        continue;
                    }

                    Volatile.Write(ref _receivedEnd, (int)frame.Cause);
                    if (end > start)
                    {
                        // Read with the END frame: they belong to whatever the stream carries next, not to this relay.
                        _afterEnd = buffer.AsMemory(start, end - start).ToArray();
                    }

                    if (frame.Cause == TunnelEndCause.Fin)
                    {
                        if (!discard && !_monitor.IsAborted)
                        {
                            // Only this side keeps the half-closed timer: the sender of END(FIN) cannot see the far
                            // side's delivery. Armed before the FIN goes on: whoever sees the FIN sees it armed.
                            _monitor.HalfClosed();
                            ShutdownSend(destination);
                            if (AbortDeferredFor(TunnelReader))
                            {
                                // The far side reset the tunnel after its END(FIN) (a write to it failed): the app gets
                                // the bytes and the FIN first, then the reset, as a direct app gets a destination's RST
                                // after its FIN.
                                await DeliverBeforeResetAsync(destination).ConfigureAwait(false);
                            }
                        }
                    }
                    else
                    {
                        Interlocked.CompareExchange(ref _abortEnd, (int)frame.Cause, NoEnd);
                        if (frame.Cause == TunnelEndCause.Reset && !discard && !_monitor.IsAborted)
                        {
                            await DeliverBeforeResetAsync(destination).ConfigureAwait(false);
                        }

                        // END(Refused) before any byte: the far host refused the first bytes itself (the enclave's
                        // server-name check), which is a refusal here too, not a read error; END(IdleTimeout): the far
                        // host's idle or half-closed timer ended the connection, and both hosts' lines say so.
                        _monitor.Abort(
                            frame.Cause == TunnelEndCause.Refused && moved + spliced == 0 ? RelayShutdownCause.Refused
                                : frame.Cause == TunnelEndCause.IdleTimeout ? RelayShutdownCause.IdleTimeout
                                : fromA ? RelayShutdownCause.AReadError : RelayShutdownCause.BReadError,
                            new IOException($"the tunnel's far side ended the stream with END({FramedStreamEnd.Name(frame.Cause)})"));
                    }

                    break;
                }

                discard |= _monitor.IsAborted;
                int inBuffer = (int)Math.Min(remaining, end - start);
                if (inBuffer > 0)
                {
                    if (!discard)
                    {
                        PlainWriting(true);
                        int sent = 0;
                        try
                        {
                            for (sent = SendNow(destination, buffer.AsSpan(start, inBuffer)); sent < inBuffer;)
                            {
                                sent += await destination.SendAsync(buffer.AsMemory(start + sent, inBuffer - sent), SocketFlags.None).ConfigureAwait(false);
                            }

                            moved += inBuffer;
                        }
                        catch (Exception ex)
                        {
                            moved += sent; // what the destination took before the error
                            if (!DeferAbort(ex, fromA, PlainReader))
                            {
                                AbortOnError(ex, receiving: false, fromA);
                            }

                            discard = true;
                        }
                        finally
                        {
                            PlainWriting(false);
                        }
                    }

                    start += inBuffer;
                    remaining -= inBuffer;
                    _monitor.Touch();
                    continue;
                }

                if (splice && !discard)
                {
                    pipe ??= _rentPipe();
                    if (pipe is null)
                    {
                        splice = false; // out of descriptors: copy through user space
                        continue;
                    }

                    receiving = true;
                    int read = pipe.FillFrom(tunnel.SafeHandle, (int)Math.Min(remaining, pipe.Capacity));
                    if (read == SplicePipe.WouldBlock)
                    {
                        ValueTask ready = SocketReadiness.WaitReadableInlineAsync(tunnel, drained: true);
                        if (!ready.IsCompleted)
                        {
                            SplicePipe.Return(pipe); // empty here
                            pipe = null;
                        }

                        await ready.ConfigureAwait(false);
                        continue;
                    }

                    if (read == SplicePipe.Unsupported)
                    {
                        splice = false;
                        continue;
                    }

                    if (read == 0)
                    {
                        throw new IOException("the tunnel stream ended inside a DATA frame");
                    }

                    receiving = false;
                    drained = false; // the fill asked for the frame's bytes only: more may be queued
                    remaining -= read;
                    _monitor.Touch();
                    PlainWriting(true);
                    try
                    {
                        PipeDrain drain = await DrainPipeAsync(pipe, destination).ConfigureAwait(false);
                        spliced += drain.Spliced;
                        moved += drain.Delivered;
                        drain.Failed?.Throw();
                        splice = drain.DestinationSplices;
                    }
                    catch (Exception ex)
                    {
                        if (!DeferAbort(ex, fromA, PlainReader))
                        {
                            AbortOnError(ex, receiving: false, fromA);
                        }

                        discard = true;
                        SplicePipe.Return(pipe); // closed, not pooled: it still holds bytes
                        pipe = null;
                    }
                    finally
                    {
                        PlainWriting(false);
                    }

                    _monitor.Touch();
                    continue;
                }

                // Copy (or discard): receive into the buffer; bytes past the frame are the next frames.
                buffer ??= ArrayPool<byte>.Shared.Rent(bufferSize);
                start = 0;
                receiving = true;
                int received = await SocketReadiness.ReceiveAsync(tunnel, buffer.AsMemory(0, bufferSize)).ConfigureAwait(false);
                if (received == 0)
                {
                    throw new IOException("the tunnel stream ended inside a DATA frame");
                }

                receiving = false;
                drained = received < bufferSize;
                end = received;
            }
        }
        catch (Exception ex)
        {
            AbortOnError(ex, receiving, fromA);
        }
        finally
        {
            if (pipe is not null)
            {
                SplicePipe.Return(pipe);
            }

            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }

            AddSpliced(fromA, spliced);
        }

        ReaderEnded(TunnelReader);
        return moved;
    }

    /// <summary>
    /// Moves everything in <paramref name="pipe"/> to <paramref name="destination"/>: spliced while it takes bytes, a
    /// small head through user space when it is full (the send waits for room), everything through user space when it
    /// cannot splice.
    /// </summary>
    /// <returns>Bytes spliced, and whether the destination splices.</returns>
    /// <remarks>
    /// Its state machine comes from a pool (<see cref="PoolingAsyncValueTaskMethodBuilder{TResult}"/>): with the default
    /// builder every wait for room at the destination (a bulk transfer's normal state) boxed a new one, where v1's
    /// loop, which drains inline (SocketRelaySession.Splice.cs), allocates nothing.
    /// </remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<PipeDrain> DrainPipeAsync(SplicePipe pipe, Socket destination)
    {
        long spliced = 0;
        long copied = 0;
        bool destinationSplices = true;
        try
        {
            while (pipe.Buffered > 0)
            {
                int sent = destinationSplices ? pipe.DrainTo(destination.SafeHandle) : SplicePipe.Unsupported;
                if (sent > 0)
                {
                    spliced += sent;
                    continue;
                }

                destinationSplices = sent != SplicePipe.Unsupported;
                Interlocked.Increment(ref _drainWaits);
                byte[] chunk = ArrayPool<byte>.Shared.Rent(destinationSplices ? WaitChunk : SplicePipe.DefaultCapacity);
                try
                {
                    int length = pipe.ReadInto(chunk);
                    for (int done = 0; done < length;)
                    {
                        int more = await destination.SendAsync(chunk.AsMemory(done, length - done), SocketFlags.None).ConfigureAwait(false);
                        done += more;
                        copied += more;
                    }
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(chunk);
                }
            }
        }
        catch (Exception ex)
        {
            // What went before the error reached the destination and is counted: an abort (the drain deadline, a
            // reset) in the middle of a frame of up to 256 KiB left the far host counting more than this one.
            return new PipeDrain(spliced, spliced + copied, destinationSplices, ExceptionDispatchInfo.Capture(ex));
        }

        return new PipeDrain(spliced, spliced + copied, destinationSplices, null);
    }

    /// <summary>What <see cref="DrainPipeAsync"/> did: the bytes it spliced (for the splice counters) and delivered in
    /// all (spliced or copied), whether the destination takes splices, and the error that stopped it, if any.</summary>
    private readonly record struct PipeDrain(long Spliced, long Delivered, bool DestinationSplices, ExceptionDispatchInfo? Failed);

    /// <summary>The END frame for <paramref name="cause"/>: one shared, never written array per cause defined in
    /// <see cref="TunnelEndCause"/> (no allocation per connection), a new one for any other value.</summary>
    private static ReadOnlyMemory<byte> EndFrame(TunnelEndCause cause) =>
        (int)cause < EndFrames.Length ? EndFrames[(int)cause] : NewEndFrame(cause);

    private static readonly byte[][] EndFrames =
        [.. Enumerable.Range(0, (int)Enum.GetValues<TunnelEndCause>().Max() + 1).Select(value => NewEndFrame((TunnelEndCause)value))];

    private static byte[] NewEndFrame(TunnelEndCause cause)
    {
        byte[] frame = new byte[TunnelFrames.EndFrameLength];
        TunnelFrames.WriteEnd(frame, cause);
        return frame;
    }

    private void AddSpliced(bool fromA, long spliced)
    {
        if (fromA)
        {
            SplicedAToB += spliced;
        }
        else
        {
            SplicedBToA += spliced;
        }
    }
}
