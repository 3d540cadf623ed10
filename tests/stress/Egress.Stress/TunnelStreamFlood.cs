using System.Net.Sockets;

namespace Egress.Stress;

/// <summary>
/// Issue 13 case 2, as anything that can reach the parent's tunnel endpoint: opens <c>idle</c> DNS streams (request
/// <c>01 02 00 00</c>, docs/tunnel-protocol.md) that send nothing after the parent's <c>Ok</c>, and <c>partial</c> DNS
/// streams (spread evenly among the idle ones, so a cap on DNS streams admits both kinds) that send a frame prefix announcing 65,535 bytes and then only <c>partialBytes</c> of them. Holds them
/// until <c>seconds</c> have passed and reports how many the parent accepted, refused (a status other than Ok, with
/// the first detail) or closed unanswered, and how many of each kind it closed later, and when.
/// </summary>
internal static class TunnelStreamFlood
{
    private static readonly byte[] DnsStreamRequest = [1, 2, 0, 0];

    public static async Task<int> RunAsync(string tunnelPath, int idle, int partial, int partialBytes, int parallel, double seconds)
    {
        var closes = new PeerCloses();
        var partialCloses = new PeerCloses();
        var endPoint = new UnixDomainSocketEndPoint(tunnelPath);
        int total = idle + partial;
        var sockets = new Socket?[total];
        int next = -1;
        int idleOk = 0;
        int partialOk = 0;
        int refused = 0;
        int unanswered = 0;
        int failed = 0;
        string firstDetail = "-";
        string firstError = "-";
        byte[] partialFrame = new byte[2 + partialBytes];
        partialFrame[0] = 0xFF;
        partialFrame[1] = 0xFF;
        var openers = new Task[parallel];
        for (int p = 0; p < parallel; p++)
        {
            openers[p] = Task.Run(async () =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < total && closes.Elapsed < seconds)
                {
                    var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                    try
                    {
                        await socket.ConnectAsync(endPoint, deadline.Token).ConfigureAwait(false);
                        await socket.SendAsync(DnsStreamRequest, SocketFlags.None, deadline.Token).ConfigureAwait(false);
                        byte[] head = new byte[3];
                        if (!await SocketReads.ReadExactlyAsync(socket, head, deadline.Token).ConfigureAwait(false))
                        {
                            Interlocked.Increment(ref unanswered);
                            socket.Dispose();
                            continue;
                        }

                        if (head[1] != 0)
                        {
                            byte[] detail = new byte[head[2]];
                            await SocketReads.ReadExactlyAsync(socket, detail, deadline.Token).ConfigureAwait(false);
                            if (Interlocked.Increment(ref refused) == 1)
                            {
                                firstDetail = $"status{head[1]}:{System.Text.Encoding.UTF8.GetString(detail)}";
                            }

                            socket.Dispose();
                            continue;
                        }

                        if (IsPartial(i, partial, total))
                        {
                            await socket.SendAsync(partialFrame, SocketFlags.None, deadline.Token).ConfigureAwait(false);
                            Interlocked.Increment(ref partialOk);
                        }
                        else
                        {
                            Interlocked.Increment(ref idleOk);
                        }

                        sockets[i] = socket;
                        (IsPartial(i, partial, total) ? partialCloses : closes).Watch(socket);
                    }
                    catch (Exception ex) when (ex is SocketException or OperationCanceledException)
                    {
                        if (Interlocked.Increment(ref failed) == 1)
                        {
                            firstError = ex.Message;
                        }

                        socket.Dispose();
                    }
                }
            });
        }

        await Task.WhenAll(openers).ConfigureAwait(false);
        double openedAfter = closes.Elapsed;
        await ConnectionFlood.WaitUntilAsync(closes, seconds).ConfigureAwait(false);
        closes.Stop();
        partialCloses.Stop();
        var report = new Report()
            .Add("idle_ok", idleOk).Add("partial_ok", partialOk).Add("refused", refused).Add("unanswered", unanswered)
            .Add("failed", failed).Add("open_phase_s", openedAfter);
        partialCloses.AddTo(report, "partial_");
        closes.AddTo(report, "idle_");
        report.Add("open_at_end", idleOk + partialOk - closes.Count - partialCloses.Count).Add("first_refusal", firstDetail).Add("first_error", firstError);
        Console.WriteLine(report);
        foreach (Socket? socket in sockets)
        {
            socket?.Dispose();
        }

        return 0;
    }

    /// <summary>Whether stream <paramref name="i"/> of <paramref name="total"/> is one of the <paramref name="partial"/>
    /// partial-frame streams, spread evenly.</summary>
    private static bool IsPartial(int i, int partial, int total) =>
        (long)i * partial / total != (long)(i + 1) * partial / total;
}
