using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Egress.Stress;

/// <summary>
/// Issue 13 case 3: one query of <c>length</c> bytes (65,508: one more than a UDP datagram carries over IPv4) for an
/// allowed name, padded with an additional record, sent over TCP to the forwarder; again every <c>intervalMs</c> on a
/// new connection until <c>seconds</c> have passed. Reports the answers by RCODE and the queries left unanswered.
/// </summary>
internal static class OversizeQueryClient
{
    public static async Task<int> RunAsync(IPEndPoint server, string name, int length, int intervalMs, double seconds)
    {
        long start = Stopwatch.GetTimestamp();
        int sent = 0;
        int noAnswer = 0;
        var rcodes = new SortedDictionary<int, int>();
        while (Stopwatch.GetElapsedTime(start).TotalSeconds < seconds)
        {
            ushort id = (ushort)Random.Shared.Next(1, 65536);
            byte[] frame = DnsMessages.Framed(DnsMessages.PaddedQuery(id, name, length));
            using var socket = new Socket(server.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            sent++;
            try
            {
                await socket.ConnectAsync(server, deadline.Token).ConfigureAwait(false);
                await socket.SendAsync(frame, SocketFlags.None, deadline.Token).ConfigureAwait(false);
                byte[]? answer = await SocketReads.ReadFrameAsync(socket, deadline.Token).ConfigureAwait(false);
                if (answer is { Length: >= DnsMessages.HeaderLength } && DnsMessages.Id(answer) == id)
                {
                    int rcode = DnsMessages.Rcode(answer);
                    rcodes[rcode] = rcodes.GetValueOrDefault(rcode) + 1;
                }
                else
                {
                    noAnswer++;
                }
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException)
            {
                noAnswer++;
            }

            await Task.Delay(intervalMs).ConfigureAwait(false);
        }

        string byRcode = rcodes.Count == 0 ? "-" : string.Join(',', rcodes.Select(pair => $"{pair.Key}:{pair.Value}"));
        Console.WriteLine(new Report().Add("sent", sent).Add("no_answer", noAnswer).Add("rcodes", byRcode).Add("query_bytes", length));
        return 0;
    }
}
