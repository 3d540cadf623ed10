using System.CommandLine;
using System.Globalization;
using Egress.Stress;

// egress-stress: the well-behaved app, the hostile clients, the world-side servers and the process sampler that
// tests/stress/run.sh drives. Every client command prints one line of key=value pairs when it ends.
Option<double> seconds = Options.Seconds();
Option<int> parallel = Options.Count("--parallel", "connections being opened at once", 64);

var dns = Options.EndPoint("--dns", "the DNS server to query over UDP (the enclave's forwarder)");
var nameSuffix = Options.Text("--name-suffix", "queries go to vN.SUFFIX, a new name each time");
var dnsRate = Options.Count("--dns-rate", "queries started per second", 100);
var http = Options.EndPoint("--http", "the HTTP server to GET / from (through the redirect rules and the proxy)");
var httpRate = Options.Count("--http-rate", "requests started per second", 10);
var timeoutMs = Options.Count("--timeout-ms", "how long one query or request may take", 5000);
var timeline = new Option<string?>("--timeline") { Description = "write the measured run per second to this CSV file", HelpName = "PATH" };
var warmup = new Option<double>("--warmup") { Description = "seconds of unmeasured traffic first (then it prints 'measuring')", DefaultValueFactory = _ => 0 };
var victim = new Command("victim", "the well-behaved app: DNS over UDP and HTTP at steady rates; success and latency percentiles")
{
    dns, nameSuffix, dnsRate, http, httpRate, timeoutMs, warmup, timeline, seconds,
};
victim.SetAction((parse, _) => VictimApp.RunAsync(
    () => new VictimApp(
        parse.GetRequiredValue(dns), parse.GetRequiredValue(nameSuffix), parse.GetValue(dnsRate), parse.GetRequiredValue(http),
        parse.GetValue(httpRate), TimeSpan.FromMilliseconds(parse.GetValue(timeoutMs))),
    parse.GetValue(warmup),
    parse.GetValue(seconds),
    parse.GetValue(timeline)));

var target = Options.EndPoint("--target", "where to connect (an allowed destination)");
var count = Options.Count("--count", "how many connections", 1000);
var connFlood = new Command("conn-flood", "case 1: idle TCP connections through the proxy, held until the end") { target, count, parallel, seconds };
connFlood.SetAction((parse, _) => ConnectionFlood.RunAsync(parse.GetRequiredValue(target), parse.GetValue(count), parse.GetValue(parallel), parse.GetValue(seconds)));

var tunnel = Options.Text("--tunnel", "the path of the parent's unix: tunnel socket");
var idle = new Option<int>("--idle") { Description = "DNS streams that stay idle after Ok", DefaultValueFactory = _ => 1000 };
var partial = new Option<int>("--partial") { Description = "DNS streams that send part of a 64 KiB frame after Ok", DefaultValueFactory = _ => 100 };
var partialBytes = Options.Count("--partial-bytes", "bytes of the 65,535-byte message sent", 32768);
var tunnelStreams = new Command("tunnel-streams", "case 2: idle and partial-frame DNS streams straight at the tunnel endpoint")
{
    tunnel, idle, partial, partialBytes, parallel, seconds,
};
tunnelStreams.SetAction((parse, _) => TunnelStreamFlood.RunAsync(
    parse.GetRequiredValue(tunnel), parse.GetValue(idle), parse.GetValue(partial), parse.GetValue(partialBytes), parse.GetValue(parallel), parse.GetValue(seconds)));

var server = Options.EndPoint("--server", "the DNS-over-TCP server (the enclave's forwarder)");
var name = Options.Text("--name", "the allowed name to ask for");
var length = Options.Count("--length", "the query's length in bytes (at most 65,535)", 65508);
var intervalMs = Options.Count("--interval-ms", "pause between queries", 100);
var oversize = new Command("dns-oversize", "case 3: a query too large for UDP over TCP, repeated") { server, name, length, intervalMs, seconds };
oversize.SetAction((parse, _) => OversizeQueryClient.RunAsync(
    parse.GetRequiredValue(server), parse.GetRequiredValue(name), parse.GetValue(length), parse.GetValue(intervalMs), parse.GetValue(seconds)));

var queries = Options.Count("--count", "queries per connection", 25600);
var connections = Options.Count("--connections", "how many connections", 1);
var pipeline = new Command("dns-pipeline", "case 4: many pipelined queries on one TCP connection for a name whose upstream never answers")
{
    server, name, queries, connections, seconds,
};
pipeline.SetAction((parse, _) => PipelinedQueryClient.RunAsync(
    parse.GetRequiredValue(server), parse.GetRequiredValue(name), parse.GetValue(queries), parse.GetValue(connections), parse.GetValue(seconds)));

var byteIntervalMs = Options.Count("--byte-interval-ms", "pause between two bytes on a connection", 5000);
var slowCount = Options.Count("--count", "how many connections", 500);
var slow = new Command("dns-slow", "case 5: DNS-over-TCP clients sending one byte every few seconds") { server, name, slowCount, byteIntervalMs, parallel, seconds };
slow.SetAction((parse, _) => SlowByteClient.RunAsync(
    parse.GetRequiredValue(server), parse.GetRequiredValue(name), parse.GetValue(slowCount), parse.GetValue(byteIntervalMs), parse.GetValue(parallel), parse.GetValue(seconds)));

var listen = Options.EndPoint("--listen", "where to listen");
var hold = new Command("hold-server", "world: accept TCP connections and hold them, discarding what arrives") { listen };
hold.SetAction((parse, _) => Servers.HoldAsync(parse.GetRequiredValue(listen)));
var blackHole = new Command("dns-blackhole", "world: a DNS server (UDP and TCP) that never answers") { listen };
blackHole.SetAction((parse, _) => Servers.DnsBlackHoleAsync(parse.GetRequiredValue(listen)));

var pids = new Option<string[]>("--pid")
{
    Description = "NAME=PID of a process to sample (repeatable)",
    Required = true,
    AllowMultipleArgumentsPerToken = false,
    Validators =
    {
        result =>
        {
            foreach (string value in result.GetValueOrDefault<string[]>() ?? [])
            {
                if (ParsePid(value) is null)
                {
                    result.AddError($"--pid '{value}': expected NAME=PID");
                }
            }
        },
    },
};
var sampleMs = Options.Count("--interval-ms", "sampling period", 200);
var monitor = new Command("monitor", "sample RSS, descriptors and liveness of processes") { pids, sampleMs, seconds };
monitor.SetAction((parse, _) => ProcessMonitor.RunAsync(
    [.. parse.GetRequiredValue(pids).Select(value => ParsePid(value)!.Value)], parse.GetValue(sampleMs), parse.GetValue(seconds)));

var root = new RootCommand("egress-stress: the clients and servers of the Egress stress suite (tests/stress/run.sh)")
{
    victim, connFlood, tunnelStreams, oversize, pipeline, slow, hold, blackHole, monitor,
};
return await root.Parse(args).InvokeAsync();

static (string Name, int Pid)? ParsePid(string value)
{
    int equals = value.IndexOf('=', StringComparison.Ordinal);
    return equals > 0 && int.TryParse(value.AsSpan(equals + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && pid > 0
        ? (value[..equals], pid)
        : null;
}
