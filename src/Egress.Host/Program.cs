using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using Egress.Configuration;
using Egress.Diagnostics;
using Egress.Gateway;
using Egress.Hosting;
using Egress.Host;
using Egress.Policy;
using Egress.Tunnel;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

const string Usage = """
    egress-host: transparent, allowlisted egress for AWS Nitro Enclaves (the parent instance side).

    Usage:
      egress-host [--config PATH] [--tunnel ENDPOINT] [--dns-upstream IP[:PORT]]... [--log-level LEVEL]
                  [--log-format text|json] [--metrics-listen IP:PORT [--metrics-allow-remote]]
          Accept tunnel streams from egress-enclave, re-check every destination against the same enclave.toml
          (internal ranges such as 169.254.169.254 are refused unless listed by IP/CIDR), dial it and relay.
          DNS streams: every query's name is re-checked (REFUSED when not allowed), forwarded to the upstream
          resolvers (UDP, TCP when truncated, failing over in order within [host] dns_timeout_ms), and the
          answered addresses are learned so connections to them are allowed. Runs until SIGTERM or SIGINT: then
          it stops accepting, ends idle DNS streams, lets live connections finish for up to
          [relay] shutdown_drain_seconds (default 10), aborts the rest and exits 0. Under systemd (Type=notify)
          it reports READY once listening and logs in journald's format.

    Options:
      --config PATH        enclave.toml (default: ./enclave.toml), the same file the enclave uses
      --tunnel ENDPOINT    where to listen, overriding [tunnel] host_endpoint (default vsock://any:4433);
                           tests: unix:/path, tcp://127.0.0.1:4433
      --dns-upstream IP[:PORT]
                           a resolver to forward DNS queries to (repeatable, tried in order; port 53 by
                           default; IPv6 as [addr]:port); overrides [host] dns_upstreams. Without either,
                           the parent's own resolvers from its resolv.conf are used
      --log-level LEVEL    Trace, Debug, Information (default), Warning, Error or Critical
      --log-format FORMAT  text (default): one line per event, "2025-01-31T12:00:00.000Z info: Category[id] message";
                           json: one JSON object per line (Timestamp, EventId, LogLevel, Category, Message, State)
      --metrics-listen IP:PORT
                           serve Prometheus metrics at http://IP:PORT/metrics (default: off), overriding
                           [host] metrics_listen; loopback addresses only (127.0.0.1:9464, [::1]:9464)
      --metrics-allow-remote
                           allow a non-loopback --metrics-listen / metrics_listen (the endpoint has no
                           authentication: firewall it)
      -h, --help           show this help
      --version            print the version (with the git commit it was built from), the .NET runtime and
                           the RID, and exit

    Examples:
      egress-host --config /etc/egress/enclave.toml
      egress-host --config enclave.toml --metrics-listen 127.0.0.1:9464     # then: curl -s http://127.0.0.1:9464/metrics
      egress-host --config enclave.toml --tunnel unix:/tmp/egress.sock --dns-upstream 10.0.0.2 --log-format json

    Exit codes: 0 stopped cleanly, 1 runtime failure (the tunnel or metrics address cannot be bound),
    2 bad command line or configuration (the message names file:line:col).
    """;

HostRuntime.PreferInlineSocketCompletions();

var command = HostRuntime.ParseCommandLine(args, Usage, ["--dns-upstream", "--metrics-listen"], ["--metrics-allow-remote"], out var exitCode);
if (command is null)
{
    return exitCode;
}

if (command.Positional.Count > 0)
{
    Console.Error.WriteLine($"error: unexpected argument '{command.Positional[0]}' (see --help)");
    return HostRuntime.UsageError;
}

if (!HostRuntime.TryReadLogging(command, out var logLevel, out var jsonLogs))
{
    return HostRuntime.UsageError;
}

IPEndPoint? metricsListen = null;
if (command.Value("--metrics-listen") is { } metricsText && !EndPointText.TryParseListen(metricsText, out metricsListen, out var metricsProblem))
{
    return Fail($"--metrics-listen '{metricsText}': {metricsProblem}");
}

var configuration = HostRuntime.LoadConfiguration(command.Value("--config"), Console.Error);
if (configuration is null)
{
    return HostRuntime.UsageError;
}

var upstreams = new List<IPEndPoint>();
foreach (var text in command.Values("--dns-upstream"))
{
    if (!EndPointText.TryParseUpstream(text, out var upstream, out var upstreamProblem))
    {
        return Fail($"--dns-upstream '{text}': {upstreamProblem}");
    }

    upstreams.Add(upstream);
}

TunnelEndpoint listen;
AllowlistCache cache;
EgressPolicy policy;
PolicyDigest policyDigest;
try
{
    cache = configuration.CreateCache();
    policy = configuration.CreatePolicy(cache);
    policyDigest = configuration.GetPolicyDigest();
    listen = configuration.GetTunnelEndpoint(TunnelSide.Host, command.Value("--tunnel"));

    if (metricsListen is null && configuration.Host.MetricsListen is { } configured)
    {
        metricsListen = configured;
        if (!MetricsEndPoint.IsLoopback(configured) && !command.Has("--metrics-allow-remote"))
        {
            throw configuration.CreateException("host.metrics_listen", MetricsEndPoint.NotLoopbackProblem);
        }
    }
}
catch (ConfigurationException ex)
{
    Console.Error.WriteLine(ex.Message);
    return HostRuntime.UsageError;
}
catch (FormatException ex)
{
    return Fail($"--tunnel: {ex.Message}");
}

if (metricsListen is not null && !MetricsEndPoint.IsLoopback(metricsListen) && !command.Has("--metrics-allow-remote"))
{
    return Fail($"--metrics-listen {metricsListen}: {MetricsEndPoint.NotLoopbackProblem}");
}

var builder = HostRuntime.CreateBuilder(logLevel, jsonLogs, configuration.Relay.ShutdownDrain);
builder.Services.AddSingleton(services => new EgressMetrics(services.GetRequiredService<IMeterFactory>(), "parent", cache));
if (metricsListen is not null)
{
    MetricsEndPoint.AddPrometheus(builder.Services, metricsListen);
}

builder.Services.AddSingleton(services => new TunnelGateway(
    new TunnelGatewayOptions
    {
        Listen = listen,
        HeaderTimeout = configuration.Host.HeaderTimeout,
        ConnectTimeout = configuration.Host.ConnectTimeout,
        Relay = configuration.CreateRelayOptions(),
        ShutdownDrain = configuration.Relay.ShutdownDrain,
        DnsUpstreams = upstreams.Count > 0 ? upstreams : configuration.Host.DnsUpstreams,
        DnsTimeout = configuration.Host.DnsTimeout,
        MaxStreams = configuration.Host.MaxStreams,
        KeepAliveIdle = configuration.Host.KeepAliveIdle,
        KeepAliveInterval = configuration.Host.KeepAliveInterval,
        KeepAliveProbes = configuration.Host.KeepAliveProbes,
        Metrics = services.GetRequiredService<EgressMetrics>(),
    },
    policy,
    services.GetRequiredService<ILoggerFactory>()));
builder.Services.AddSingleton<IHostedService>(services =>
{
    var gateway = services.GetRequiredService<TunnelGateway>();
    return new ListenerService(
        gateway.Start,
        gateway.StopAsync,
        ex => ex switch
        {
            SocketException => $"cannot listen on {listen}: {ex.Message}",
            IOException => ex.Message,
            _ => null,
        });
});

using var host = builder.Build();
HostRuntime.LogStart(host, "Egress.Host", policyDigest);
return await HostRuntime.RunAsync(host, ex => ex.InnerException is HttpListenerException listenerError
    ? $"cannot serve metrics on http://{metricsListen}/metrics: {listenerError.Message}"
    : null);

static int Fail(string message)
{
    Console.Error.WriteLine($"error: {message}");
    return HostRuntime.UsageError;
}
