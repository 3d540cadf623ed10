using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;

namespace Egress.Stress;

/// <summary>
/// When the server side closed (or reset) the connections a hostile client holds, in seconds since the client
/// started: each watched socket reads (and discards) until end of stream. Closes after <see cref="Stop"/> (the
/// client closing its own sockets) are not counted.
/// </summary>
internal sealed class PeerCloses
{
    private readonly long _start = Stopwatch.GetTimestamp();
    private readonly ConcurrentQueue<double> _seconds = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _watches = [];
    private readonly Lock _lock = new();

    public int Count => _seconds.Count;

    public double Elapsed => Stopwatch.GetElapsedTime(_start).TotalSeconds;

    /// <summary>Starts watching <paramref name="socket"/> (which must not be read elsewhere).</summary>
    public void Watch(Socket socket)
    {
        Task watch = WatchAsync(socket);
        lock (_lock)
        {
            _watches.Add(watch);
        }
    }

    /// <summary>Stops counting; the caller then closes its sockets.</summary>
    public void Stop() => _stop.Cancel();

    /// <summary>Adds <c>PREFIX_closed_by_server</c>, and the first and the median close time in seconds.</summary>
    public void AddTo(Report report, string prefix)
    {
        double[] sorted = [.. _seconds.Order()];
        report.Add($"{prefix}closed_by_server", sorted.Length)
            .Add($"{prefix}first_close_s", sorted.Length > 0 ? sorted[0] : -1)
            .Add($"{prefix}median_close_s", sorted.Length > 0 ? sorted[sorted.Length / 2] : -1);
    }

    private async Task WatchAsync(Socket socket)
    {
        byte[] buffer = new byte[512];
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, _stop.Token).ConfigureAwait(false) > 0)
            {
            }
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // Reset, or our own stop.
        }

        if (!_stop.IsCancellationRequested)
        {
            _seconds.Enqueue(Elapsed);
        }
    }
}
