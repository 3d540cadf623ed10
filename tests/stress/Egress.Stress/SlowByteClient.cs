using System.Net;
using System.Net.Sockets;

namespace Egress.Stress;

/// <summary>
/// Issue 13 case 5: <c>count</c> DNS-over-TCP connections to the forwarder, each sending a valid framed query one byte
/// every <c>byteIntervalMs</c> (starting at a random point of the first interval, so the bytes are spread out),
/// starting the next query when one is sent, until <c>seconds</c> have passed. Reports how many connections the
/// forwarder closed and when, and how many were still open at the end.
/// </summary>
internal static class SlowByteClient
{
    public static async Task<int> RunAsync(IPEndPoint server, string name, int count, int byteIntervalMs, int parallel, double seconds)
    {
        var closes = new PeerCloses();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var sockets = new Socket?[count];
        var drips = new List<Task>(count);
        var dripsLock = new Lock();
        int next = -1;
        int failed = 0;
        string firstError = "-";
        var openers = new Task[parallel];
        for (int p = 0; p < parallel; p++)
        {
            openers[p] = Task.Run(async () =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < count && !stop.IsCancellationRequested)
                {
                    var socket = new Socket(server.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                    using var connectTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                    try
                    {
                        await socket.ConnectAsync(server, connectTimeout.Token).ConfigureAwait(false);
                        sockets[i] = socket;
                        closes.Watch(socket);
                        Task drip = DripAsync(socket, name, byteIntervalMs, stop.Token);
                        lock (dripsLock)
                        {
                            drips.Add(drip);
                        }
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
        await ConnectionFlood.WaitUntilAsync(closes, seconds).ConfigureAwait(false);
        closes.Stop();
        int opened = sockets.Count(socket => socket is not null);
        var report = new Report().Add("opened", opened).Add("connect_failed", failed);
        closes.AddTo(report, string.Empty);
        report.Add("open_at_end", opened - closes.Count).Add("first_error", firstError);
        Console.WriteLine(report);
        foreach (Socket? socket in sockets)
        {
            socket?.Dispose();
        }

        await Task.WhenAll(drips).ConfigureAwait(false);
        return 0;
    }

    private static async Task DripAsync(Socket socket, string name, int byteIntervalMs, CancellationToken stop)
    {
        try
        {
            await Task.Delay(Random.Shared.Next(byteIntervalMs), stop).ConfigureAwait(false);
            byte[] frame = [];
            int offset = 0;
            while (true)
            {
                if (offset == frame.Length)
                {
                    frame = DnsMessages.Framed(DnsMessages.Query((ushort)Random.Shared.Next(1, 65536), name));
                    offset = 0;
                }

                await socket.SendAsync(frame.AsMemory(offset++, 1), SocketFlags.None, stop).ConfigureAwait(false);
                await Task.Delay(byteIntervalMs, stop).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // Closed by the forwarder, or the end of the run.
        }
    }
}
