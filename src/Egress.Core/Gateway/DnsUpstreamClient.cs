using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Egress.Dns;

namespace Egress.Gateway;

/// <summary>
/// Sends a query to the upstream resolvers and returns their answer verbatim: UDP first (the query as the enclave
/// sent it, EDNS included), TCP when the UDP answer is truncated; on a timeout or error the next upstream is tried,
/// each attempt getting an equal share of what is left of the overall timeout. Toward the upstream the query
/// carries a random ID from a fresh socket with a random source port, and a UDP answer counts only when its ID and
/// question match (anything else is ignored as spoofed or stray).
/// </summary>
internal sealed class DnsUpstreamClient(IReadOnlyList<IPEndPoint> upstreams, TimeSpan timeout, TimeProvider time)
{
    /// <summary>Gets the resolvers, in order of preference.</summary>
    public IReadOnlyList<IPEndPoint> Upstreams => upstreams;

    /// <summary>Resolves <paramref name="query"/>; its ID is restored before this returns.</summary>
    /// <param name="query">The query.</param>
    /// <param name="response">Receives the answer (at least 65535 bytes), with the query's ID.</param>
    /// <param name="aborted">Ends the attempt at once.</param>
    /// <returns>The answer's length, or -1 when no upstream answered in time.</returns>
    public async ValueTask<int> ResolveAsync(Memory<byte> query, Memory<byte> response, CancellationToken aborted)
    {
        ushort originalId = DnsMessage.ReadId(query.Span);
        DnsMessage.WriteId(query.Span, (ushort)RandomNumberGenerator.GetInt32(ushort.MaxValue + 1));
        try
        {
            long start = time.GetTimestamp();
            for (int i = 0; i < upstreams.Count; i++)
            {
                TimeSpan left = timeout - time.GetElapsedTime(start);
                if (left <= TimeSpan.Zero)
                {
                    break;
                }

                TimeSpan share = left / (upstreams.Count - i);
                int length = await ExchangeUdpAsync(upstreams[i], query, response, share, aborted).ConfigureAwait(false);
                if (length > 0 && DnsMessage.IsTruncated(response.Span[..length]))
                {
                    length = await ExchangeTcpAsync(upstreams[i], query, response, share, aborted).ConfigureAwait(false);
                }

                if (length > 0)
                {
                    DnsMessage.WriteId(response.Span, originalId);
                    return length;
                }
            }

            return -1;
        }
        finally
        {
            DnsMessage.WriteId(query.Span, originalId);
        }
    }

    private async ValueTask<int> ExchangeUdpAsync(IPEndPoint upstream, ReadOnlyMemory<byte> query, Memory<byte> response, TimeSpan limit, CancellationToken aborted)
    {
        using var socket = new Socket(upstream.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        using var deadline = new CancellationTokenSource(limit, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, aborted);
        try
        {
            // Connected: the kernel drops datagrams from any other address or port.
            socket.Connect(upstream);
            await socket.SendAsync(query, SocketFlags.None, linked.Token).ConfigureAwait(false);
            while (true)
            {
                int received = await socket.ReceiveAsync(response, SocketFlags.None, linked.Token).ConfigureAwait(false);
                if (DnsForwarding.IsAnswerTo(query.Span, response.Span[..received]))
                {
                    return received;
                }
            }
        }
        catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
        {
            return -1;
        }
        catch (SocketException)
        {
            return -1;
        }
    }

    private async ValueTask<int> ExchangeTcpAsync(IPEndPoint upstream, ReadOnlyMemory<byte> query, Memory<byte> response, TimeSpan limit, CancellationToken aborted)
    {
        using var socket = new Socket(upstream.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var deadline = new CancellationTokenSource(limit, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, aborted);
        try
        {
            await socket.ConnectAsync(upstream, linked.Token).ConfigureAwait(false);
            byte[] frame = new byte[DnsTcpFraming.PrefixLength + query.Length];
            DnsTcpFraming.WriteMessage(query.Span, frame);
            await socket.SendAsync(frame, SocketFlags.None, linked.Token).ConfigureAwait(false);
            if (!await ReceiveExactlyAsync(socket, response[..DnsTcpFraming.PrefixLength], linked.Token).ConfigureAwait(false))
            {
                return -1;
            }

            int length = BinaryPrimitives.ReadUInt16BigEndian(response.Span);
            if (length == 0 || !await ReceiveExactlyAsync(socket, response[..length], linked.Token).ConfigureAwait(false))
            {
                return -1;
            }

            return DnsForwarding.IsAnswerTo(query.Span, response.Span[..length]) ? length : -1;
        }
        catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
        {
            return -1;
        }
        catch (SocketException)
        {
            return -1;
        }
    }

    private static async ValueTask<bool> ReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (!buffer.IsEmpty)
        {
            int received = await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (received == 0)
            {
                return false;
            }

            buffer = buffer[received..];
        }

        return true;
    }
}
