using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Egress.Stress;

/// <summary>
/// Issue 13 case 1, from an app in the enclave: opens <c>count</c> TCP connections to an allowed destination (through
/// the redirect rules to the proxy) as fast as <c>parallel</c> connects allow, sends nothing and holds them until
/// <c>seconds</c> have passed. Reports how many the kernel accepted, how many the proxy then closed or reset, and how
/// many were still open at the end.
/// </summary>
internal static class ConnectionFlood
{
    public static async Task<int> RunAsync(IPEndPoint target, int count, int parallel, double seconds)
    {
        var closes = new PeerCloses();
        var sockets = new Socket?[count];
        int next = -1;
        int failed = 0;
        string firstError = "-";
        var openers = new Task[parallel];
        for (int p = 0; p < parallel; p++)
        {
            openers[p] = Task.Run(async () =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < count && closes.Elapsed < seconds)
                {
                    var socket = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                    using var connectTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                    try
                    {
                        await socket.ConnectAsync(target, connectTimeout.Token).ConfigureAwait(false);
                        sockets[i] = socket;
                        closes.Watch(socket);
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
        await WaitUntilAsync(closes, seconds).ConfigureAwait(false);
        closes.Stop();
        int opened = sockets.Count(socket => socket is not null);
        var report = new Report().Add("opened", opened).Add("connect_failed", failed).Add("open_phase_s", openedAfter);
        closes.AddTo(report, string.Empty);
        report.Add("open_at_end", opened - closes.Count).Add("first_error", firstError);
        Console.WriteLine(report);
        foreach (Socket? socket in sockets)
        {
            socket?.Dispose();
        }

        return 0;
    }

    /// <summary>Waits until <paramref name="seconds"/> have passed since <paramref name="clock"/> started.</summary>
    public static async Task WaitUntilAsync(PeerCloses clock, double seconds)
    {
        double left = seconds - clock.Elapsed;
        if (left > 0)
        {
            await Task.Delay(TimeSpan.FromSeconds(left)).ConfigureAwait(false);
        }
    }
}
