using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Egress.Stress;

/// <summary>
/// The well-behaved application: at a steady rate, A queries over UDP for names nobody else asks (one socket per query,
/// as a stub resolver does; success is a NOERROR answer with a record and the query's ID), and HTTP/1.0 GETs through
/// the proxy (success is a whole "200" response). Every attempt's latency counts, a failed one's up to when it
/// failed (a timeout counts as the timeout), so a percentile cannot hide failures. Requests are started on a fixed
/// schedule whatever the previous ones do (open loop), as independent clients would.
/// </summary>
internal sealed class VictimApp(IPEndPoint dnsServer, string nameSuffix, int dnsPerSecond, IPEndPoint httpTarget, int httpPerSecond, TimeSpan timeout)
{
    private static readonly byte[] HttpRequest = Encoding.ASCII.GetBytes("GET / HTTP/1.0\r\nHost: stress.test\r\nUser-Agent: egress-stress-victim\r\n\r\n");
    private static readonly byte[] HttpStatusOk = Encoding.ASCII.GetBytes("HTTP/1.1 200 ");
    private static int s_nextName;

    private readonly Latencies _dnsLatencies = new();
    private readonly Latencies _httpLatencies = new();
    private int _dnsOk;
    private int _dnsServFail;
    private int _dnsOtherRcode;
    private int _dnsNoAnswer;
    private int _httpOk;
    private int _httpTimeout;
    private int _httpReset;
    private Timeline? _timeline;

    public int DnsOk => _dnsOk;

    public int HttpOk => _httpOk;

    /// <summary>
    /// Runs unmeasured for <paramref name="warmupSeconds"/> (this process's own code gets compiled, the hosts' paths
    /// too), prints <c>measuring</c> with what the warm-up got, then runs measured for <paramref name="seconds"/> and
    /// prints the report. Exits 1 at once, without measuring, when the warm-up got no DNS answer or no HTTP response.
    /// </summary>
    public static async Task<int> RunAsync(Func<VictimApp> create, double warmupSeconds, double seconds, string? timelinePath)
    {
        ThreadPool.GetMinThreads(out int workers, out int completionPorts);
        ThreadPool.SetMinThreads(Math.Max(workers, 32), completionPorts);
        if (warmupSeconds > 0)
        {
            VictimApp warmup = create();
            await warmup.MeasureAsync(warmupSeconds).ConfigureAwait(false);
            Console.WriteLine(new Report().Add("measuring", 1).Add("warmup_dns_ok", warmup.DnsOk).Add("warmup_http_ok", warmup.HttpOk));
            if (warmup.DnsOk == 0 || warmup.HttpOk == 0)
            {
                return 1;
            }
        }

        VictimApp measured = create();
        Console.WriteLine(await measured.MeasureAsync(seconds).ConfigureAwait(false));
        if (timelinePath is not null)
        {
            await measured._timeline!.WriteAsync(timelinePath).ConfigureAwait(false);
        }

        return 0;
    }

    private async Task<Report> MeasureAsync(double seconds)
    {
        long start = Stopwatch.GetTimestamp();
        _timeline = new Timeline(start, seconds);
        Task<int> dns = PaceAsync(start, seconds, dnsPerSecond, LookUpAsync);
        Task<int> http = PaceAsync(start, seconds, httpPerSecond, FetchAsync);
        int dnsSent = await dns.ConfigureAwait(false);
        int httpSent = await http.ConfigureAwait(false);
        return new Report()
            .Add("dns_sent", dnsSent).Add("dns_ok", _dnsOk).Add("dns_servfail", _dnsServFail).Add("dns_other_rcode", _dnsOtherRcode)
            .Add("dns_no_answer", _dnsNoAnswer)
            .Add("dns_p50_ms", _dnsLatencies.Percentile(0.50)).Add("dns_p99_ms", _dnsLatencies.Percentile(0.99))
            .Add("dns_max_ms", _dnsLatencies.Percentile(1.0))
            .Add("http_sent", httpSent).Add("http_ok", _httpOk).Add("http_timeout", _httpTimeout).Add("http_reset", _httpReset)
            .Add("http_p50_ms", _httpLatencies.Percentile(0.50)).Add("http_p99_ms", _httpLatencies.Percentile(0.99));
    }

    /// <summary>Starts <paramref name="perSecond"/> attempts a second for <paramref name="seconds"/> and waits for all.</summary>
    private static async Task<int> PaceAsync(long start, double seconds, int perSecond, Func<Task> attempt)
    {
        if (perSecond <= 0)
        {
            return 0;
        }

        var running = new List<Task>();
        long interval = Stopwatch.Frequency / perSecond;
        long end = start + (long)(seconds * Stopwatch.Frequency);
        for (long due = start; due < end; due += interval)
        {
            long wait = due - Stopwatch.GetTimestamp();
            if (wait > 0)
            {
                await Task.Delay(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency)).ConfigureAwait(false);
            }

            running.Add(Task.Run(attempt));
        }

        await Task.WhenAll(running).ConfigureAwait(false);
        return running.Count;
    }

    private async Task LookUpAsync()
    {
        int n = Interlocked.Increment(ref s_nextName);
        ushort id = (ushort)Random.Shared.Next(1, 65536);
        byte[] query = DnsMessages.Query(id, $"v{n}.{nameSuffix}");
        byte[] answer = new byte[1500];
        bool ok = false;
        long started = Stopwatch.GetTimestamp();
        using var socket = new Socket(dnsServer.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            await socket.ConnectAsync(dnsServer, deadline.Token).ConfigureAwait(false);
            await socket.SendAsync(query, SocketFlags.None, deadline.Token).ConfigureAwait(false);
            while (true)
            {
                int length = await socket.ReceiveAsync(answer, SocketFlags.None, deadline.Token).ConfigureAwait(false);
                if (length < DnsMessages.HeaderLength || DnsMessages.Id(answer) != id)
                {
                    continue; // not ours: keep waiting, as a stub resolver does
                }

                int rcode = DnsMessages.Rcode(answer);
                if (rcode == 0 && DnsMessages.AnswerCount(answer) > 0)
                {
                    ok = true;
                    Interlocked.Increment(ref _dnsOk);
                }
                else if (rcode == 2)
                {
                    Interlocked.Increment(ref _dnsServFail);
                }
                else
                {
                    Interlocked.Increment(ref _dnsOtherRcode);
                }

                break;
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException)
        {
            Interlocked.Increment(ref _dnsNoAnswer); // no answer in time, or the port refused (ICMP)
        }

        _dnsLatencies.Add(started);
        _timeline?.AddDns(started, ok);
    }

    private async Task FetchAsync()
    {
        long started = Stopwatch.GetTimestamp();
        using var socket = new Socket(httpTarget.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var deadline = new CancellationTokenSource(timeout);
        byte[] response = new byte[4096];
        bool ok = false;
        try
        {
            await socket.ConnectAsync(httpTarget, deadline.Token).ConfigureAwait(false);
            await socket.SendAsync(HttpRequest, SocketFlags.None, deadline.Token).ConfigureAwait(false);
            int total = 0;
            int read;
            while ((read = await socket.ReceiveAsync(response.AsMemory(Math.Min(total, response.Length - 1)), SocketFlags.None, deadline.Token).ConfigureAwait(false)) > 0)
            {
                total += read;
            }

            if (total >= HttpStatusOk.Length && response.AsSpan(0, HttpStatusOk.Length).SequenceEqual(HttpStatusOk))
            {
                ok = true;
                Interlocked.Increment(ref _httpOk);
            }
            else
            {
                Interlocked.Increment(ref _httpReset); // closed before a whole 200 response
            }
        }
        catch (OperationCanceledException)
        {
            Interlocked.Increment(ref _httpTimeout);
        }
        catch (SocketException)
        {
            Interlocked.Increment(ref _httpReset);
        }

        _httpLatencies.Add(started);
        _timeline?.AddHttp(started, ok);
    }
}
