using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Egress.Benchmarks.Tools;

/// <summary>One connection, one byte out and one byte back per round trip, blocking calls on one thread.</summary>
internal static class LatencyClient
{
    // At least this many round trips and this long before measuring: a host started just before (--only=latency) still
    // runs unoptimised code for its first few hundred milliseconds, until the runtime's tiered compilation catches up.
    private const int WarmupRoundTrips = 2000;
    private static readonly TimeSpan WarmupTime = TimeSpan.FromSeconds(1);

    public static int Run(IPEndPoint target, int seconds)
    {
        using var socket = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        socket.Connect(target);
        byte[] one = [42];
        byte[] reply = new byte[1];
        long warmUntil = Stopwatch.GetTimestamp() + (long)(WarmupTime.TotalSeconds * Stopwatch.Frequency);
        for (int i = 0; i < WarmupRoundTrips || Stopwatch.GetTimestamp() < warmUntil; i++)
        {
            RoundTrip(socket, one, reply);
        }

        var samples = new long[4_000_000];
        int count = 0;
        long end = Stopwatch.GetTimestamp() + (seconds * Stopwatch.Frequency);
        long now = Stopwatch.GetTimestamp();
        while (now < end && count < samples.Length)
        {
            long start = now;
            RoundTrip(socket, one, reply);
            now = Stopwatch.GetTimestamp();
            samples[count++] = now - start;
        }

        socket.Shutdown(SocketShutdown.Send);
        Array.Sort(samples, 0, count);
        Console.WriteLine(FormattableString.Invariant(
            $"count={count} p50_us={Micros(samples[count / 2]):F1} p99_us={Micros(samples[(int)(count * 0.99)]):F1}"));
        return count > 0 ? 0 : 1;
    }

    private static void RoundTrip(Socket socket, byte[] one, byte[] reply)
    {
        socket.Send(one);
        if (socket.Receive(reply) != 1)
        {
            throw new IOException("the echo server closed the connection");
        }
    }

    private static double Micros(long ticks) => ticks * 1_000_000.0 / Stopwatch.Frequency;
}
