using System.Buffers;
using System.Net.Sockets;
using Egress.Sockets;

namespace Egress.Relay;

/// <summary>
/// The splicing direction loop: socket to kernel pipe to socket with splice(2), so the bytes never enter user space.
/// Readiness still comes from the socket engine: a zero-byte receive waits for data without holding a pipe, and a
/// destination that has no room is waited on by sending a small head of the pipe's content through user space.
/// </summary>
internal sealed partial class SocketRelaySession
{
    /// <summary>A fill at least this large suggests more is queued: splice again before waiting for readiness.</summary>
    private const int SpliceAgainThreshold = SplicePipe.DefaultCapacity / 2;

    /// <summary>What a direction copies after waking up before it splices: a message this small or smaller is only copied.</summary>
    private const int SmallRead = 4 * 1024;

    /// <summary>How much of the pipe goes through user space when the destination is full (the send waits for room).</summary>
    private const int WaitChunk = 8 * 1024;

    /// <summary>Moves one direction until end of stream (forwarded as a half-close) or an error (which aborts both); never throws.</summary>
    private async Task<long> SpliceAsync(Socket source, Socket destination, ReadOnlyMemory<byte> pending, bool fromA)
    {
        long moved = 0;
        long spliced = 0;
        SplicePipe? pipe = null;
        bool receiving = false;
        try
        {
            if (!pending.IsEmpty)
            {
                await SendAllAsync(destination, pending).ConfigureAwait(false);
                moved += pending.Length;
                _monitor.Touch();
            }

            SafeSocketHandle from = source.SafeHandle;
            SafeSocketHandle to = destination.SafeHandle;
            bool likelyMore = false;
            bool streaming = false; // the last fill brought more than a small read: skip the copy on the next wake-up
            bool waited = false;
            while (true)
            {
                receiving = true;
                bool woke = !likelyMore; // this round waited for readiness: the source has something to read
                if (!likelyMore)
                {
                    // Wait for data without a pipe; an idle direction holds none.
                    // Every wait but the first follows a receive or fill that came back short or empty (likelyMore is
                    // false), so the socket had nothing queued: no poll.
                    ValueTask ready = SocketReadiness.WaitReadableInlineAsync(source, drained: waited);
                    waited = true;
                    if (!ready.IsCompleted && pipe is not null)
                    {
                        SplicePipe.Return(pipe);
                        pipe = null;
                    }

                    await ready.ConfigureAwait(false);
                }

                if (!likelyMore && !streaming)
                {
                    // A few bytes are cheaper to copy than to splice (a page per message); a full small read means a
                    // burst is queued, and the rest of it is spliced.
                    byte[] small = ArrayPool<byte>.Shared.Rent(SmallRead);
                    try
                    {
                        int got = await SocketReadiness.ReceiveAsync(source, small.AsMemory(0, SmallRead)).ConfigureAwait(false);
                        receiving = false;
                        if (got == 0)
                        {
                            _monitor.HalfClosed(); // before the FIN goes on: whoever sees it sees the timer armed
                            ShutdownSend(destination);
                            break;
                        }

                        _monitor.Touch();
                        // Counted as the destination takes them (an abort in the middle counts what went before it).
                        int done = SendNow(destination, small.AsSpan(0, got));
                        moved += done;
                        while (done < got)
                        {
                            int more = await destination.SendAsync(small.AsMemory(done, got - done), SocketFlags.None).ConfigureAwait(false);
                            done += more;
                            moved += more;
                        }

                        _monitor.Touch();
                        if (got < SmallRead)
                        {
                            continue;
                        }
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(small);
                    }

                    receiving = true;
                }

                pipe ??= _rentPipe();
                if (pipe is null)
                {
                    // No pipe to be had (out of descriptors): copy through user space rather than fail the connection.
                    receiving = false;
                    return moved + await CopyAsync(source, destination, ReadOnlyMemory<byte>.Empty, fromA).ConfigureAwait(false);
                }

                int read = pipe.FillFrom(from);
                if (read == SplicePipe.WouldBlock)
                {
                    likelyMore = false;
                    // Readable, yet splice reads nothing: TCP urgent data (MSG_OOB) is next, which splice(2) never
                    // moves past (it stops at the urgent mark, and the socket stays readable: retrying spun a core for
                    // ever). The next round copies instead: a receive reads the urgent byte in line (SO_OOBINLINE, set
                    // on the relayed TCP sockets; without it the kernel drops that byte from the stream) and clears
                    // the mark, and splicing resumes after it.
                    streaming &= !woke;
                    continue;
                }

                if (read == SplicePipe.Unsupported)
                {
                    // This socket type cannot splice on this kernel: copy through user space for the rest.
                    receiving = false;
                    return moved + await CopyAsync(source, destination, ReadOnlyMemory<byte>.Empty, fromA).ConfigureAwait(false);
                }

                if (read == 0)
                {
                    // End of stream, or a TCP urgent mark once the peer's FIN has arrived: splice(2) returns 0 there too
                    // (tcp_splice_read stops at the mark, then sees the shutdown) with bytes still queued behind it, and
                    // taking it for the end cut the transfer short. Only a receive tells them apart: the next round
                    // copies, and its receive reads on past the mark, or reads the end and ends this direction.
                    streaming = false;
                    likelyMore = false;
                    continue;
                }

                receiving = false;

                _monitor.Touch();
                bool destinationSplices = true;
                while (pipe.Buffered > 0)
                {
                    int sent = destinationSplices ? pipe.DrainTo(to) : SplicePipe.Unsupported;
                    if (sent > 0)
                    {
                        moved += sent;
                        spliced += sent;
                        continue;
                    }

                    // No room at the destination (the send below waits for it), or a destination that cannot splice.
                    destinationSplices = sent != SplicePipe.Unsupported;
                    byte[] chunk = ArrayPool<byte>.Shared.Rent(destinationSplices ? WaitChunk : SplicePipe.DefaultCapacity);
                    try
                    {
                        int length = pipe.ReadInto(chunk);
                        for (int done = 0; done < length;)
                        {
                            // Inline rather than a helper: an async helper would allocate whenever the send has to wait.
                            done += await destination.SendAsync(chunk.AsMemory(done, length - done), SocketFlags.None).ConfigureAwait(false);
                        }

                        moved += length; // SendAsync completes only with every byte sent, or throws (no partial count)

                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(chunk);
                    }
                }

                _monitor.Touch();
                if (!destinationSplices)
                {
                    return moved + await CopyAsync(source, destination, ReadOnlyMemory<byte>.Empty, fromA).ConfigureAwait(false);
                }

                likelyMore = read >= SpliceAgainThreshold;
                streaming = read > SmallRead;
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
                SplicePipe.Return(pipe); // closed instead of pooled if an abort left bytes in it
            }

            if (fromA)
            {
                SplicedAToB = spliced;
            }
            else
            {
                SplicedBToA = spliced;
            }
        }

        return moved;
    }
}
