using System.Net;
using System.Net.Sockets;

namespace Egress.Benchmarks.Tools;

/// <summary>Opens N relayed connections (each proven end to end by a 1-byte echo) and holds them idle until killed;
/// silent, it sends nothing (the server waits for the client: a TLS server), and each must still be open, neither
/// closed nor reset by a proxy, 2 s after the last one connected.</summary>
internal static class HoldClient
{
    private static readonly TimeSpan SilentCheck = TimeSpan.FromSeconds(2);

    public static async Task<int> RunAsync(IPEndPoint target, int count, int parallel, bool silent = false)
    {
        var sockets = new Socket?[count];
        int next = -1;
        int failed = 0;
        var openers = new Task[parallel];
        for (int p = 0; p < parallel; p++)
        {
            openers[p] = Task.Run(async () =>
            {
                byte[] buffer = [7];
                int i;
                while ((i = Interlocked.Increment(ref next)) < count)
                {
                    var socket = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                    try
                    {
                        await socket.ConnectAsync(target).ConfigureAwait(false);
                        if (!silent)
                        {
                            await socket.SendAsync(buffer, SocketFlags.None).ConfigureAwait(false);
                            if (await socket.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false) != 1)
                            {
                                throw new IOException("closed before the echo");
                            }
                        }

                        sockets[i] = socket;
                    }
                    catch (Exception ex) when (ex is SocketException or IOException)
                    {
                        if (Interlocked.Increment(ref failed) == 1)
                        {
                            await Console.Error.WriteLineAsync($"connection {i}: {ex.Message}").ConfigureAwait(false);
                        }

                        socket.Dispose();
                    }
                }
            });
        }

        await Task.WhenAll(openers).ConfigureAwait(false);
        if (silent)
        {
            // A silent connection the proxy refused or could not relay is closed or reset: readable (0 or an error).
            await Task.Delay(SilentCheck).ConfigureAwait(false);
            foreach (Socket? socket in sockets)
            {
                if (socket is not null && socket.Poll(0, SelectMode.SelectRead))
                {
                    if (Interlocked.Increment(ref failed) == 1)
                    {
                        await Console.Error.WriteLineAsync("a silent connection was closed or reset").ConfigureAwait(false);
                    }
                }
            }
        }

        Console.WriteLine($"ready held={count - failed} failed={failed}");
        if (failed > 0)
        {
            return 1;
        }

        await Task.Delay(Timeout.Infinite).ConfigureAwait(false);
        GC.KeepAlive(sockets);
        return 0;
    }
}
