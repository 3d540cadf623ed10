using System.Net;
using System.Net.Sockets;

namespace Egress.Stress;

/// <summary>
/// Issue 13 case 4: on each of <c>connections</c> TCP connections to the forwarder, <c>count</c> queries for one allowed
/// name whose upstream never answers, written back to back in one send (25,600 of them are about 1 MB), then answers
/// read as they come until <c>seconds</c> have passed. Reports how many bytes the forwarder took, and the answers
/// by RCODE.
/// </summary>
internal static class PipelinedQueryClient
{
    public static async Task<int> RunAsync(IPEndPoint server, string name, int count, int connections, double seconds)
    {
        var clock = new PeerCloses();
        long written = 0;
        long planned = 0;
        int answered = 0;
        int servFail = 0;
        int closedByServer = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var sessions = new Task[connections];
        for (int c = 0; c < connections; c++)
        {
            sessions[c] = Task.Run(async () =>
            {
                using var buffer = new MemoryStream();
                for (int i = 0; i < count; i++)
                {
                    buffer.Write(DnsMessages.Framed(DnsMessages.Query((ushort)i, name)));
                }

                byte[] batch = buffer.ToArray();
                Interlocked.Add(ref planned, batch.Length);
                using var socket = new Socket(server.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                try
                {
                    await socket.ConnectAsync(server, stop.Token).ConfigureAwait(false);
                    Task send = SendAllAsync(socket, batch, bytes => Interlocked.Add(ref written, bytes), stop.Token);
                    while (await SocketReads.ReadFrameAsync(socket, stop.Token).ConfigureAwait(false) is { } answer)
                    {
                        Interlocked.Increment(ref answered);
                        if (answer.Length >= DnsMessages.HeaderLength && DnsMessages.Rcode(answer) == 2)
                        {
                            Interlocked.Increment(ref servFail);
                        }
                    }

                    Interlocked.Increment(ref closedByServer);
                    await send.ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is SocketException or OperationCanceledException)
                {
                    // The end of the run, or a reset.
                }
            });
        }

        await Task.WhenAll(sessions).ConfigureAwait(false);
        await ConnectionFlood.WaitUntilAsync(clock, seconds).ConfigureAwait(false);
        Console.WriteLine(new Report()
            .Add("queries", (long)count * connections).Add("bytes_planned", planned).Add("bytes_taken", written)
            .Add("answered", answered).Add("servfail", servFail).Add("closed_by_server", closedByServer));
        return 0;
    }

    /// <summary>Sends <paramref name="data"/> in 64 KiB pieces, reporting progress, until done or cancelled.</summary>
    private static async Task SendAllAsync(Socket socket, byte[] data, Action<int> sent, CancellationToken cancellationToken)
    {
        try
        {
            for (int offset = 0; offset < data.Length;)
            {
                int n = await socket.SendAsync(data.AsMemory(offset, Math.Min(65536, data.Length - offset)), SocketFlags.None, cancellationToken).ConfigureAwait(false);
                offset += n;
                sent(n);
            }
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            // The end of the run, or a reset.
        }
    }
}
