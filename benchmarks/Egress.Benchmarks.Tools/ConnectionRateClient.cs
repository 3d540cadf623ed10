using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Egress.Benchmarks.Tools;

/// <summary>C loops of connect, a 32-byte request, its 32-byte echo, close; counts completed exchanges per second.</summary>
internal static class ConnectionRateClient
{
    private const int RequestLength = 32;

    public static async Task<int> RunAsync(IPEndPoint target, int seconds, int concurrency)
    {
        // Some socket calls complete synchronously on the calling pool thread (connect through a DNAT rule showed it):
        // enough threads that the client is never what limits the rate.
        ThreadPool.GetMinThreads(out int workers, out int completionPorts);
        ThreadPool.SetMinThreads(Math.Max(workers, concurrency * 4), completionPorts);
        long completed = 0;
        long failed = 0;
        long end = Stopwatch.GetTimestamp() + (seconds * Stopwatch.Frequency);
        long start = Stopwatch.GetTimestamp();
        var loops = new Task[concurrency];
        for (int i = 0; i < concurrency; i++)
        {
            loops[i] = Task.Run(async () =>
            {
                byte[] request = new byte[RequestLength];
                byte[] response = new byte[RequestLength];
                while (Stopwatch.GetTimestamp() < end)
                {
                    if (await ExchangeAsync(target, request, response).ConfigureAwait(false))
                    {
                        Interlocked.Increment(ref completed);
                    }
                    else
                    {
                        Interlocked.Increment(ref failed);
                    }
                }
            });
        }

        await Task.WhenAll(loops).ConfigureAwait(false);
        double elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
        Console.WriteLine(FormattableString.Invariant(
            $"completed={completed} failed={failed} per_second={completed / elapsed:F0}"));
        return completed > 0 && failed == 0 ? 0 : 1;
    }

    private static async Task<bool> ExchangeAsync(IPEndPoint target, byte[] request, byte[] response)
    {
        using var socket = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(target).ConfigureAwait(false);
            await socket.SendAsync(request, SocketFlags.None).ConfigureAwait(false);
            int received = 0;
            while (received < RequestLength)
            {
                int read = await socket.ReceiveAsync(response.AsMemory(received), SocketFlags.None).ConfigureAwait(false);
                if (read == 0)
                {
                    return false;
                }

                received += read;
            }

            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
