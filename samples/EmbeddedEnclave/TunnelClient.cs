using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Egress.Tunnel;

namespace EmbeddedEnclave;

/// <summary>
/// The enclave side, by hand: opens a tunnel stream, sends a TCP request header written by
/// <see cref="TunnelCodec"/>, reads the parent's status, and on <see cref="TunnelStatus.Ok"/> sends one line and
/// reads the reply until the destination closes.
/// </summary>
internal sealed class TunnelClient(TunnelEndpoint tunnel)
{
    public async Task<Exchange> ExchangeAsync(IPEndPoint destination, string? hostHint, string line, CancellationToken cancellationToken)
    {
        using var socket = await tunnel.ConnectAsync(cancellationToken);
        await using var stream = new NetworkStream(socket, ownsSocket: false);

        var header = new byte[TunnelCodec.MaxRequestLength];
        var length = TunnelCodec.WriteRequest(TunnelRequest.ForTcp(destination, hostHint), header);
        await stream.WriteAsync(header.AsMemory(0, length), cancellationToken);

        var reader = PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true));
        try
        {
            var (result, response) = await TunnelCodec.ReadResponseAsync(reader, cancellationToken);
            if (result != TunnelReadResult.Complete)
            {
                return new Exchange(TunnelStatus.Failure, $"unreadable answer from the parent: {result}", Reply: "");
            }

            if (response.Status != TunnelStatus.Ok)
            {
                return new Exchange(response.Status, response.Detail, Reply: "");
            }

            // The stream is now the destination's: send a line, half-close, read everything back.
            await stream.WriteAsync(Encoding.ASCII.GetBytes(line + "\n"), cancellationToken);
            socket.Shutdown(SocketShutdown.Send);
            var reply = new StringBuilder();
            while (true)
            {
                var read = await reader.ReadAsync(cancellationToken);
                foreach (var segment in read.Buffer)
                {
                    reply.Append(Encoding.ASCII.GetString(segment.Span));
                }

                reader.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted)
                {
                    break;
                }
            }

            return new Exchange(TunnelStatus.Ok, response.Detail, reply.ToString());
        }
        finally
        {
            await reader.CompleteAsync();
        }
    }

    public sealed record Exchange(TunnelStatus Status, string? Detail, string Reply);
}
