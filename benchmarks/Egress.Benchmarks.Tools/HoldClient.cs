using System.Net;
using System.Net.Sockets;

namespace Egress.Benchmarks.Tools;

/// <summary>Opens N relayed connections (each proven end to end by a 1-byte echo) and holds them idle until killed.</summary>
internal static class HoldClient
{
    public static async Task<int> RunAsync(IPEndPoint target, int count, int parallel)
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
                        await socket.SendAsync(buffer, SocketFlags.None).ConfigureAwait(false);
                        if (await socket.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false) != 1)
                        {
                            throw new IOException("closed before the echo");
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
