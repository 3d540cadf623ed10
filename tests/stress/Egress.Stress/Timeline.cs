using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Egress.Stress;

/// <summary>
/// The victim's attempts per second of the measured run, by the second each started in: how many, how many
/// succeeded, the slowest (ms). Written as CSV, so a run kept with --keep shows when in the load the failures came;
/// beside it (PATH with "-dns" before the extension), every DNS query: when it started (ms into the run), how long
/// it took (ms) and whether it was answered (1) or failed (0), to tell which queries make the p99.
/// </summary>
internal sealed class Timeline(long startTimestamp, double seconds)
{
    private readonly Bucket[] _dns = NewBuckets(seconds);
    private readonly Bucket[] _http = NewBuckets(seconds);
    private readonly List<(double StartMs, double Ms, bool Ok)> _dnsQueries = [];
    private readonly Lock _lock = new();

    public void AddDns(long started, bool ok)
    {
        Add(_dns, started, ok);
        double startMs = Stopwatch.GetElapsedTime(startTimestamp, started).TotalMilliseconds;
        double ms = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        lock (_lock)
        {
            _dnsQueries.Add((startMs, ms, ok));
        }
    }

    public void AddHttp(long started, bool ok) => Add(_http, started, ok);

    public async Task WriteAsync(string path)
    {
        var csv = new StringBuilder("second,dns_sent,dns_ok,dns_max_ms,http_sent,http_ok,http_max_ms\n");
        lock (_lock)
        {
            for (int i = 0; i < _dns.Length; i++)
            {
                csv.AppendLine(CultureInfo.InvariantCulture,
                    $"{i},{_dns[i].Sent},{_dns[i].Ok},{_dns[i].MaxMs:0.0},{_http[i].Sent},{_http[i].Ok},{_http[i].MaxMs:0.0}");
            }
        }

        await File.WriteAllTextAsync(path, csv.ToString()).ConfigureAwait(false);

        var queries = new StringBuilder("start_ms,dns_ms,ok\n");
        lock (_lock)
        {
            foreach ((double startMs, double ms, bool ok) in _dnsQueries.OrderBy(query => query.StartMs))
            {
                queries.AppendLine(CultureInfo.InvariantCulture, $"{startMs:0.0},{ms:0.000},{(ok ? 1 : 0)}");
            }
        }

        string queriesPath = Path.Combine(Path.GetDirectoryName(path) ?? "", $"{Path.GetFileNameWithoutExtension(path)}-dns{Path.GetExtension(path)}");
        await File.WriteAllTextAsync(queriesPath, queries.ToString()).ConfigureAwait(false);
    }

    private static Bucket[] NewBuckets(double seconds) =>
        [.. Enumerable.Range(0, (int)Math.Ceiling(seconds) + 1).Select(_ => new Bucket())];

    private void Add(Bucket[] buckets, long started, bool ok)
    {
        double milliseconds = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        int second = Math.Clamp((int)((started - startTimestamp) / Stopwatch.Frequency), 0, buckets.Length - 1);
        lock (_lock)
        {
            Bucket bucket = buckets[second];
            bucket.Sent++;
            bucket.Ok += ok ? 1 : 0;
            bucket.MaxMs = Math.Max(bucket.MaxMs, milliseconds);
        }
    }

    private sealed class Bucket
    {
        public int Sent { get; set; }

        public int Ok { get; set; }

        public double MaxMs { get; set; }
    }
}
