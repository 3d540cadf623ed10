using System.Diagnostics;

namespace Egress.Stress;

/// <summary>Latency samples in milliseconds from many threads; percentiles by the nearest-rank method.</summary>
internal sealed class Latencies
{
    private readonly List<double> _samples = [];
    private readonly Lock _lock = new();

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _samples.Count;
            }
        }
    }

    public void Add(long startTimestamp)
    {
        double milliseconds = Stopwatch.GetElapsedTime(startTimestamp).TotalMilliseconds;
        lock (_lock)
        {
            _samples.Add(milliseconds);
        }
    }

    /// <summary>The smallest sample at or above fraction <paramref name="quantile"/> of all (0 when there are none).</summary>
    public double Percentile(double quantile)
    {
        lock (_lock)
        {
            if (_samples.Count == 0)
            {
                return 0;
            }

            _samples.Sort();
            int rank = (int)Math.Ceiling(quantile * _samples.Count);
            return _samples[Math.Clamp(rank - 1, 0, _samples.Count - 1)];
        }
    }
}
