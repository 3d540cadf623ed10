using System.Buffers;
using System.Net.Sockets;
using Egress.Sockets;

namespace Egress.Relay;

/// <summary>The copying direction loop: receive into a pooled buffer, send it on.</summary>
internal sealed partial class SocketRelaySession
{
    /// <summary>Size of the buffer a flowing direction rents; one receive and one send move at most this much.</summary>
    internal const int BufferSize = 64 * 1024;

    /// <summary>Copies one direction until end of stream (forwarded as a half-close) or an error (which aborts both); never throws.</summary>
    private async Task<long> CopyAsync(Socket source, Socket destination, ReadOnlyMemory<byte> pending, bool fromA)
    {
        long moved = 0;
        byte[]? buffer = null;
        bool receiving = false;
        try
        {
            if (!pending.IsEmpty)
            {
                await SendAllAsync(destination, pending).ConfigureAwait(false);
                moved += pending.Length;
                _monitor.Touch();
            }

            bool full = false;
            bool drained = false; // the last receive came back short: the next wait needs no poll
            while (true)
            {
                receiving = true;
                if (!full)
                {
                    // Wait for data without a buffer; an idle direction holds none.
                    ValueTask ready = SocketReadiness.WaitReadableInlineAsync(source, drained);
                    if (!ready.IsCompleted && buffer is not null)
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = null;
                    }

                    await ready.ConfigureAwait(false);
                }

                buffer ??= ArrayPool<byte>.Shared.Rent(BufferSize);
                int read = await SocketReadiness.ReceiveAsync(source, buffer.AsMemory()).ConfigureAwait(false);
                receiving = false;
                if (read == 0)
                {
                    _monitor.HalfClosed(); // before the FIN goes on: whoever sees it sees the timer armed
                    ShutdownSend(destination);
                    break;
                }

                _monitor.Touch();
                // Counted as the destination takes them: an abort while the rest waits counts what the first send took
                // (SendAsync completes only with every byte sent, or throws: what it sent before an abort is not known).
                int sent = SendNow(destination, buffer.AsSpan(0, read));
                moved += sent;
                while (sent < read)
                {
                    // Inline rather than a helper: an async helper would allocate whenever the send has to wait.
                    int more = await destination.SendAsync(buffer.AsMemory(sent, read - sent), SocketFlags.None).ConfigureAwait(false);
                    sent += more;
                    moved += more;
                }

                _monitor.Touch();

                // A full buffer means more is probably queued: receive again straight away.
                full = read == buffer.Length;
                drained = !full;
            }
        }
        catch (Exception ex)
        {
            AbortOnError(ex, receiving, fromA);
        }
        finally
        {
            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        return moved;
    }

    private static async ValueTask SendAllAsync(Socket destination, ReadOnlyMemory<byte> bytes)
    {
        if (OperatingSystem.IsLinux())
        {
            // What fits now, with our own send (any mode): the runtime's asynchronous send gives the socket its
            // asynchronous context and send event args for the connection's life (SocketNative, SocketSendNow).
            bytes = bytes[SocketSendNow.NonBlocking(destination, bytes.Span)..];
        }

        while (!bytes.IsEmpty)
        {
            int sent = await destination.SendAsync(bytes, SocketFlags.None).ConfigureAwait(false);
            bytes = bytes[sent..];
        }
    }

}
