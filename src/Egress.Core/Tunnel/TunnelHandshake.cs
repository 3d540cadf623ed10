using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Egress.Sockets;

namespace Egress.Tunnel;

/// <summary>
/// The tunnel header exchange straight over a stream socket (no pipes), before a <see cref="Relay.SocketRelay"/> takes
/// over. The enclave sends the request and reads the response; the parent reads the request and sends the response.
/// </summary>
internal static class TunnelHandshake
{
    /// <summary>Receive size while reading a response: bytes that follow the header in the same receive are kept for the caller.</summary>
    internal const int ResponseReceiveSize = 4096;

    /// <summary>Receive size while reading a request (4 KiB): a whole request and the early data behind it (at most
    /// <c>ProxyConnectionHandler.EarlyDataLength</c> and its frame header) fit in one receive.</summary>
    internal const int RequestReceiveSize = 4096;

    /// <summary>
    /// Enclave side: sends <paramref name="request"/> with one send, then receives until a whole response header has arrived.
    /// </summary>
    /// <returns>
    /// The read result; the response when it is <see cref="TunnelReadResult.Complete"/>; and the bytes that arrived after
    /// the header in the same receive (the destination's first bytes, e.g. a banner), which belong to the application
    /// before anything else. <see cref="TunnelReadResult.TruncatedStream"/> when the stream ends first, or fails after
    /// part of the response.
    /// </returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="SocketException">The send failed, or a receive before any response byte.</exception>
    public static async ValueTask<(TunnelReadResult Result, TunnelResponse Response, ReadOnlyMemory<byte> Following)> RequestAsync(
        Socket tunnel, TunnelRequest request, CancellationToken cancellationToken)
    {
        var (result, response, following, _) = await RequestCountingAsync(tunnel, request, cancellationToken).ConfigureAwait(false);
        return (result, response, following);
    }

    /// <summary>
    /// As <see cref="RequestAsync"/>, and says whether any response byte arrived: a reused stream that ends or is reset
    /// before the first one was closed by the parent while it was idle, and its request may be sent again on a new stream.
    /// </summary>
    /// <param name="tunnel">The tunnel stream.</param>
    /// <param name="request">The request to send.</param>
    /// <param name="cancellationToken">Cancels by resetting the stream.</param>
    /// <param name="inline">The wait for the status continues on the epoll thread
    /// (<see cref="SocketReadiness.WaitReadableInlineAsync(Socket, bool)"/>), and so does the caller's code until it next waits: only
    /// for callers that neither block nor close a socket another wait holds before then (the proxy's set-up).</param>
    /// <param name="earlyData">Version 2 early data: the payload of one DATA frame sent right behind the request, in the
    /// same send; empty: none.</param>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="SocketException">The send failed, or a receive before any response byte (after one, a failed
    /// receive is <see cref="TunnelReadResult.TruncatedStream"/> with AnyReceived: the status was cut short).</exception>
    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public static async ValueTask<(TunnelReadResult Result, TunnelResponse Response, ReadOnlyMemory<byte> Following, bool AnyReceived)> RequestCountingAsync(
        Socket tunnel, TunnelRequest request, CancellationToken cancellationToken, bool inline = false, ReadOnlyMemory<byte> earlyData = default)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Max(ResponseReceiveSize, TunnelCodec.MaxRequestLength + TunnelFrames.HeaderLength + earlyData.Length));
        try
        {
            int length = TunnelCodec.WriteRequest(request, buffer);
            if (!earlyData.IsEmpty)
            {
                // Version 2 early data: the application's first bytes as a DATA frame in the request's send.
                TunnelFrames.WriteDataHeader(buffer.AsSpan(length), earlyData.Length);
                earlyData.Span.CopyTo(buffer.AsSpan(length + TunnelFrames.HeaderLength));
                length += TunnelFrames.HeaderLength + earlyData.Length;
            }

            await SendAllAsync(tunnel, buffer.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
            int filled = 0;
            TunnelReadResult result;
            TunnelResponse response;
            ReadOnlySequence<byte> received;

            // Cancelled by resetting the stream, not through the receive's token: the socket's cached receive operation
            // keeps the registration of the last token it waited with (and so that token's source, about 190 bytes) for
            // the connection's life. A cancelled request's stream is unusable either way; the caller closes it.
            CancellationTokenRegistration onCancel = cancellationToken.UnsafeRegister(static state => SocketReset.Reset((Socket)state!), tunnel);
            try
            {
                // The status comes after the parent has dialled the destination, never this soon: wait first rather
                // than receive into nothing (EAGAIN), one system call per connection. Inline: the caller's code runs on
                // the epoll thread from here until it waits again (no hand-off to the thread pool per connection).
                await (inline
                    ? SocketReadiness.WaitReadableInlineAsync(tunnel, drained: true)
                    : SocketReadiness.WaitReadableAsync(tunnel, drained: true)).ConfigureAwait(false);
                while (true)
                {
                    int read;
                    try
                    {
                        read = await SocketReadiness.ReceiveAsync(tunnel, buffer.AsMemory(filled)).ConfigureAwait(false);
                    }
                    catch (SocketException) when (filled > 0 && !cancellationToken.IsCancellationRequested)
                    {
                        read = 0; // reset after part of the status: cut short, as an end of stream there is (not stale)
                    }

                    if (read == 0)
                    {
                        result = TunnelReadResult.TruncatedStream;
                        response = default;
                        received = default;
                        break;
                    }

                    filled += read;
                    received = new ReadOnlySequence<byte>(buffer, 0, filled);
                    result = TunnelCodec.TryReadResponse(ref received, out response);
                    if (result != TunnelReadResult.Incomplete)
                    {
                        break; // the largest response is far smaller than the buffer, so it always fits
                    }
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException && cancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException(cancellationToken);
            }
            finally
            {
                onCancel.Dispose(); // waits for a running reset
            }

            cancellationToken.ThrowIfCancellationRequested(); // the reset may have come after the last receive
            if (result == TunnelReadResult.TruncatedStream)
            {
                return (result, default, ReadOnlyMemory<byte>.Empty, filled > 0);
            }

            ReadOnlyMemory<byte> following = result == TunnelReadResult.Complete && !received.IsEmpty
                ? received.ToArray()
                : ReadOnlyMemory<byte>.Empty;
            return (result, response, following, true);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Parent side: receives one request header, never a byte past it (whatever the peer sent after the header stays in
    /// the socket). egress-host reads with the other overload, which hands on what follows.
    /// </summary>
    /// <returns>
    /// The read result and, when it is <see cref="TunnelReadResult.Complete"/>, the request. Errors in the prefix are
    /// reported as soon as their bytes arrive; <see cref="TunnelReadResult.TruncatedStream"/> when the stream ends first.
    /// </returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="SocketException">A receive failed.</exception>
    public static async ValueTask<(TunnelReadResult Result, TunnelRequest Request)> ReadRequestAsync(Socket tunnel, CancellationToken cancellationToken)
    {
        var (result, request, _) = await ReadRequestAsync(tunnel, ReadOnlyMemory<byte>.Empty, exact: true, cancellationToken).ConfigureAwait(false);
        return (result, request);
    }

    /// <summary>
    /// Parent side, on a reused stream: as <see cref="ReadRequestAsync(Socket, CancellationToken)"/>, but the request
    /// starts with <paramref name="received"/>, bytes already read from the stream (read with the previous connection's
    /// END frame, or while waiting for the next request).
    /// </summary>
    /// <returns>As the other overload, and the bytes past the request, of <paramref name="received"/> or of the same
    /// receive, which reads whatever is there (empty unless the peer sent more than a request before its status: a
    /// version 2 request's early data): the start of what follows it on the stream.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="SocketException">A receive failed.</exception>
    public static ValueTask<(TunnelReadResult Result, TunnelRequest Request, ReadOnlyMemory<byte> Following)> ReadRequestAsync(
        Socket tunnel, ReadOnlyMemory<byte> received, CancellationToken cancellationToken) =>
        ReadRequestAsync(tunnel, received, exact: false, cancellationToken);

    /// <param name="tunnel">The stream.</param>
    /// <param name="received">Bytes of the request already read.</param>
    /// <param name="exact">Receive no byte past the request (each receive asks for what the request still lacks); else
    /// receive what is there, one receive for a request and its early data.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<(TunnelReadResult Result, TunnelRequest Request, ReadOnlyMemory<byte> Following)> ReadRequestAsync(
        Socket tunnel, ReadOnlyMemory<byte> received, bool exact, CancellationToken cancellationToken)
    {
        const int prefixLength = 4;
        if (!received.IsEmpty)
        {
            var already = new ReadOnlySequence<byte>(received);
            TunnelReadResult parsed = TunnelCodec.TryReadRequest(ref already, out TunnelRequest whole);
            if (parsed != TunnelReadResult.Incomplete)
            {
                return (parsed, whole, parsed == TunnelReadResult.Complete ? received[(int)(received.Length - already.Length)..] : ReadOnlyMemory<byte>.Empty);
            }
        }

        byte[] buffer = ArrayPool<byte>.Shared.Rent(RequestReceiveSize);
        try
        {
            // Incomplete: fewer bytes than one request, so they fit.
            received.CopyTo(buffer);
            int filled = received.Length;
            while (true)
            {
                // Not exact: as much as is there, not only the request: a version 2 request's early data (the
                // application's first bytes) comes in the same send, and goes to the relay rather than to another receive.
                int wanted = !exact ? buffer.Length - filled
                    : filled < prefixLength ? prefixLength - filled
                    : prefixLength + BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(2)) - filled;
                int read = await SocketReadiness.ReceiveAsync(tunnel, buffer.AsMemory(filled, wanted), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    return (TunnelReadResult.TruncatedStream, default, ReadOnlyMemory<byte>.Empty);
                }

                filled += read;
                var sequence = new ReadOnlySequence<byte>(buffer, 0, filled);
                TunnelReadResult result = TunnelCodec.TryReadRequest(ref sequence, out TunnelRequest request);
                if (result != TunnelReadResult.Incomplete)
                {
                    // The rest is copied: the buffer goes back to the pool here.
                    ReadOnlyMemory<byte> following = result == TunnelReadResult.Complete && sequence.Length > 0
                        ? buffer.AsSpan(filled - (int)sequence.Length, (int)sequence.Length).ToArray()
                        : ReadOnlyMemory<byte>.Empty;
                    return (result, request, following);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Parent side: sends <paramref name="response"/> with one send.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="SocketException">The send failed.</exception>
    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public static async ValueTask SendResponseAsync(Socket tunnel, TunnelResponse response, CancellationToken cancellationToken)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(TunnelCodec.MaxResponseLength);
        try
        {
            int length = TunnelCodec.WriteResponse(response, buffer);
            await SendAllAsync(tunnel, buffer.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>The most unread bytes <see cref="Close"/> discards before it closes anyway.</summary>
    internal const int MaxDrainOnClose = 64 * 1024;

    /// <summary>
    /// Closes a stream that ends after an answer without a relay: shuts the send side down (FIN after the answer),
    /// discards bytes the peer already sent (unread bytes would make the close send RST and could destroy the answer
    /// in flight; at most <see cref="MaxDrainOnClose"/>), then disposes the socket. Already closed sockets are ignored.
    /// </summary>
    public static void Close(Socket tunnel)
    {
        try
        {
            tunnel.Shutdown(SocketShutdown.Send);

            // Bounded: a peer that keeps writing must not pin this thread; past the bound the close may reset.
            // Where FIONREAD is not supported (AF_VSOCK before SIOCINQ support), Available throws and the drain is
            // skipped: harmless there, as closing a VSOCK socket with unread bytes sends a shutdown, not a reset.
            Span<byte> discard = stackalloc byte[4096];
            for (int drained = 0; drained < MaxDrainOnClose && tunnel.Available > 0;)
            {
                int read = SocketReadiness.ReceiveNow(tunnel, discard); // -1 (EAGAIN) cannot follow Available > 0
                if (read <= 0)
                {
                    break;
                }

                drained += read;
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Reset or closed already: disposing is all that is left.
        }

        tunnel.Dispose();
    }

    /// <summary>Sends all of <paramref name="bytes"/>: what fits now without waiting (<see cref="SocketSendNow"/>: a small
    /// message on a new stream always does, and the socket then keeps no send event args for the connection's life), the
    /// rest asynchronously.</summary>
    internal static async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        bytes = bytes[SocketSendNow.AnyMode(socket, bytes.Span)..];
        while (!bytes.IsEmpty)
        {
            int sent = await socket.SendAsync(bytes, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            bytes = bytes[sent..];
        }
    }
}
