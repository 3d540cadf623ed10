using Egress.Benchmarks.Tools;

// egress-bench-tool: the traffic generators and the server that benchmarks/run.sh drives.
// Every command prints one line of key=value pairs on success (read by run.sh) and exits 1 on failure.
const string Usage = """
    egress-bench-tool COMMAND [--option value ...]
      echo-server --listen IP:PORT                 echo every byte back until the peer's EOF; holds idle connections
      latency     --target IP:PORT --seconds S     1-byte ping-pong on one connection: p50_us, p99_us
      connrate    --target IP:PORT --seconds S --concurrency C
                                                   connect, 32-byte request/response, close, in C loops: per_second
      hold        --target IP:PORT --count N --parallel P
                                                   open N connections (one 1-byte echo each), print 'ready', hold until killed
      hold-silent --target IP:PORT --count N --parallel P
                                                   as hold, sending nothing (a server that waits for the client, such as
                                                   a TLS server); 'ready' once each is still open 2 s after the last connect
      dns-probe   --server IP:PORT --name NAME --timeout-ms MS
                                                   one A query over UDP; exit 0 when a NOERROR answer arrives
    """;

if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine(Usage);
    return args.Length == 0 ? 2 : 0;
}

Arguments options;
try
{
    options = Arguments.Parse(args.AsSpan(1));
    return args[0] switch
    {
        "echo-server" => await EchoServer.RunAsync(options.EndPoint("--listen")),
        "latency" => LatencyClient.Run(options.EndPoint("--target"), options.Int("--seconds")),
        "connrate" => await ConnectionRateClient.RunAsync(options.EndPoint("--target"), options.Int("--seconds"), options.Int("--concurrency")),
        "hold" => await HoldClient.RunAsync(options.EndPoint("--target"), options.Int("--count"), options.Int("--parallel")),
        "hold-silent" => await HoldClient.RunAsync(options.EndPoint("--target"), options.Int("--count"), options.Int("--parallel"), silent: true),
        "dns-probe" => await DnsProbe.RunAsync(options.EndPoint("--server"), options.Text("--name"), options.Int("--timeout-ms")),
        _ => throw new ArgumentException($"unknown command '{args[0]}'"),
    };
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 2;
}
