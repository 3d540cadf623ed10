using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using Egress.Audit;
using Egress.Configuration;
using Egress.Diagnostics;
using Egress.Dns.Upstream;
using Egress.Gateway;
using Egress.Hosting;
using Egress.Host;
using Egress.Policy;
using Egress.Tunnel;
using System.CommandLine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

const string Title = "egress-host: transparent, allowlisted egress for AWS Nitro Enclaves (the parent instance side).";
const string Epilogue = """
    Examples:
      egress-host --config /etc/egress/enclave.toml
      egress-host --config enclave.toml --metrics-listen 127.0.0.1:9464     # then: curl -s http://127.0.0.1:9464/metrics
      egress-host --config enclave.toml --tunnel unix:/tmp/egress.sock --dns-upstream 10.0.0.2 --log-format json
      egress-host --config /etc/egress/enclave.toml --check-config           # before a restart: valid? what would run?

    Exit codes: 0 stopped cleanly (--check-config: valid), 1 runtime failure (the tunnel or metrics address cannot be
    bound), 2 bad command line or configuration (the message names file:line:col).
    """;

HostRuntime.PreferInlineSocketCompletions();

var configOption = HostCommandLine.Config("enclave.toml (default: ./enclave.toml), the same file the enclave uses");
var tunnelOption = HostCommandLine.Tunnel(
    "where to listen, overriding [tunnel] host_endpoint (default vsock://any:4433); tests: unix:/path, tcp://127.0.0.1:4433");
var logLevelOption = HostCommandLine.LogLevel();
var logFormatOption = HostCommandLine.LogFormat();

// Both endpoint options use the file's grammar (EndPointText), so a value is accepted here exactly when the file accepts it.
var dnsUpstreamOption = new Option<IPEndPoint[]>("--dns-upstream")
{
    Description = "a resolver to forward DNS queries to (repeatable, tried in order; port 53 by default; IPv6 as "
        + "[addr]:port); overrides [host] dns_upstreams. Without either, the parent's own resolvers from its resolv.conf are used",
    HelpName = "IP[:PORT]",
    DefaultValueFactory = _ => [],
    CustomParser = result =>
    {
        var upstreams = new IPEndPoint[result.Tokens.Count];
        for (var i = 0; i < upstreams.Length; i++)
        {
            var text = result.Tokens[i].Value;
            if (!EndPointText.TryParseUpstream(text, out var upstream, out var problem))
            {
                result.AddError($"--dns-upstream '{text}': {problem}");
                return [];
            }

            if (EndPointText.IsListedBefore(upstreams, i, upstream))
            {
                result.AddError($"--dns-upstream {EndPointText.ListedTwice(text)}");
                return [];
            }

            upstreams[i] = upstream;
        }

        return upstreams;
    },
};
var metricsListenOption = new Option<IPEndPoint?>("--metrics-listen")
{
    Description = "serve Prometheus metrics at http://IP:PORT/metrics (default: off), overriding [host] metrics_listen; "
        + "an IPv4 loopback address only (127.0.0.1:9464; IPv6 is not supported)",
    HelpName = "IP:PORT",
    CustomParser = result =>
    {
        var text = result.Tokens[0].Value;
        if (EndPointText.TryParseListen(text, out var endPoint, out var problem))
        {
            if (MetricsEndPoint.CanListenOn(endPoint))
            {
                return endPoint;
            }

            problem = MetricsEndPoint.IPv6Problem;
        }

        result.AddError($"--metrics-listen '{text}': {problem}");
        return null;
    },
};
var metricsAllowRemoteOption = HostCommandLine.Flag("--metrics-allow-remote", "allow a non-loopback --metrics-listen / metrics_listen (the endpoint has no authentication: firewall it)");
var tunnelAllowRemoteOption = HostCommandLine.Flag(
    "--tunnel-allow-remote",
    "allow a tcp:// tunnel endpoint on a non-loopback address (tunnel streams have no authentication: "
        + "whoever reaches it egresses under this policy; firewall it)");

var checkConfigOption = HostCommandLine.Flag(
    "--check-config",
    "check everything a start checks except binding (this file, the [[host.enclaves]] files, the tunnel and "
        + "metrics endpoints, the audit log, the DNS upstreams), print what would run, and exit: 0 valid, 2 not. Starts nothing");

var root = new RootCommand("""
    Accept tunnel streams from egress-enclave, re-check every destination against the same enclave.toml (internal
    ranges such as 169.254.169.254 are refused unless listed by IP/CIDR), dial it and relay. DNS streams: every
    query's name is re-checked (NXDOMAIN when not allowed), forwarded to the upstream resolvers (UDP, TCP when
    truncated, failing over in order within [host] dns_timeout_ms), and the answered addresses are learned so
    connections to them are allowed. Runs until SIGTERM or SIGINT: then it stops accepting, ends idle DNS streams,
    lets live connections finish for up to [relay] shutdown_drain_seconds (default 10), aborts the rest and exits 0.
    Under systemd (Type=notify) it reports READY once listening and logs in journald's format.
    """)
{
    configOption, tunnelOption, dnsUpstreamOption, logLevelOption, logFormatOption, metricsListenOption, metricsAllowRemoteOption, tunnelAllowRemoteOption, checkConfigOption,
};
root.SetAction((parse, _) => RunAsync(
    parse.GetValue(configOption),
    parse.GetValue(tunnelOption),
    parse.GetValue(dnsUpstreamOption) ?? [],
    parse.GetValue(logLevelOption),
    HostCommandLine.IsJson(parse.GetValue(logFormatOption)),
    parse.GetValue(metricsListenOption),
    parse.GetValue(metricsAllowRemoteOption),
    parse.GetValue(tunnelAllowRemoteOption),
    parse.GetValue(checkConfigOption)));
return await HostCommandLine.RunAsync(root, Title, new Dictionary<Command, string> { [root] = Epilogue }, args);

static async Task<int> RunAsync(
    string? configPath, string? tunnelText, IPEndPoint[] upstreams, LogLevel logLevel, bool jsonLogs, IPEndPoint? metricsListen, bool metricsAllowRemote, bool tunnelAllowRemote, bool checkOnly)
{
    var configuration = HostRuntime.LoadConfiguration(configPath, Console.Error);
    if (configuration is null)
    {
        return HostRuntime.UsageError;
    }

    TunnelEndpoint? listen;
    PolicyDigest policyDigest;
    bool metricsFromFile = metricsListen is null && configuration.Host.MetricsListen is not null;
    try
    {
        policyDigest = configuration.GetPolicyDigest();
        listen = tunnelText is null ? null : TunnelEndpoint.Parse(tunnelText);
        bool remoteTcp = (listen ?? configuration.GetTunnelEndpoint(TunnelSide.Host)) is { Transport: TunnelTransport.Tcp, EndPoint: IPEndPoint { Address: var tcpAddress } } && !IPAddress.IsLoopback(tcpAddress);
        if (remoteTcp && !tunnelAllowRemote)
        {
            const string Problem = "a tcp:// tunnel endpoint on a non-loopback address lets anything that reaches it open tunnel streams (they have no authentication); listen on vsock: (production), unix: or tcp://127.0.0.1, or pass --tunnel-allow-remote";
            if (listen is null)
            {
                throw configuration.CreateException("tunnel.host_endpoint", Problem);
            }

            return Fail($"--tunnel {listen}: {Problem}");
        }

        if (!remoteTcp && tunnelAllowRemote)
        {
            return Fail("--tunnel-allow-remote has nothing to allow: the tunnel endpoint is not tcp:// on a non-loopback address");
        }
        if (metricsListen is null && configuration.Host.MetricsListen is { } configured)
        {
            metricsListen = configured;
            if (!MetricsEndPoint.CanListenOn(configured))
            {
                throw configuration.CreateException("host.metrics_listen", MetricsEndPoint.IPv6Problem);
            }

            if (!MetricsEndPoint.IsLoopback(configured) && !metricsAllowRemote)
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

    if (metricsListen is not null && !MetricsEndPoint.IsLoopback(metricsListen) && !metricsAllowRemote)
    {
        return Fail($"--metrics-listen {metricsListen}: {MetricsEndPoint.NotLoopbackProblem}");
    }

    if (metricsListen is null && metricsAllowRemote)
    {
        return Fail("--metrics-allow-remote has nothing to allow: no --metrics-listen and no [host] metrics_listen");
    }

    // A start would fail to bind the second and blame "another instance": the two are this process's own.
    if (metricsListen is not null && (listen ?? configuration.GetTunnelEndpoint(TunnelSide.Host)) is { Transport: TunnelTransport.Tcp, EndPoint: IPEndPoint tunnelEndPoint }
        && tunnelEndPoint.Port == metricsListen.Port
        && (tunnelEndPoint.Address.Equals(metricsListen.Address) || tunnelEndPoint.Address.Equals(IPAddress.Any) || metricsListen.Address.Equals(IPAddress.Any)))
    {
        string problem = $"the metrics endpoint {metricsListen} and the tunnel endpoint {tunnelEndPoint} are the same port: give one of them another";
        if (metricsFromFile)
        {
            // Located at the file's key, as the file's other errors are.
            Console.Error.WriteLine(configuration.CreateException("host.metrics_listen", problem).Message);
            return HostRuntime.UsageError;
        }

        return Fail(problem);
    }

    if (checkOnly)
    {
        return CheckConfiguration(configPath ?? "enclave.toml", configuration, listen, upstreams, metricsListen, policyDigest);
    }

    var builder = HostRuntime.CreateBuilder(logLevel, jsonLogs, configuration.Relay.ShutdownDrain);
    if (metricsListen is not null)
    {
        MetricsEndPoint.AddPrometheus(builder.Services, metricsListen);
    }

    try
    {
        // The [[host.enclaves]] files' warnings are written where LoadConfiguration wrote this file's.
        builder.Services.AddEgressHost(configuration, listen, upstreams, Console.Error.WriteLine);
    }
    catch (ConfigurationException ex)
    {
        Console.Error.WriteLine(ex.Message);
        return HostRuntime.UsageError;
    }

    using var host = builder.Build();
    HostRuntime.LogStart(host, "Egress.Host", policyDigest, policyPerEnclave: configuration.Host.Enclaves.Count > 0);
    if (metricsListen is not null)
    {
        // Said once it is served (the exporter binds at start), as the gateway says where it listens.
        var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Egress.Host");
        host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStarted.Register(
            () => HostLog.MetricsServed(logger, $"http://{metricsListen}/metrics"));
    }

    return await HostRuntime.RunAsync(host, ex => ex.InnerException is HttpListenerException listenerError
        ? $"cannot serve metrics on http://{metricsListen}/metrics: {listenerError.Message}"
        : null);
}

// --check-config: what a start reads and checks before it binds, changing nothing: the [[host.enclaves]] files
// (read as registration reads them), the DNS upstreams (found as the gateway finds them), the audit log (its rights
// asked, never opened or created: AuditLogTarget). Prints where each part comes from.
static int CheckConfiguration(
    string configPath, EgressConfiguration configuration, TunnelEndpoint? listen, IPEndPoint[] upstreams, IPEndPoint? metricsListen, PolicyDigest policyDigest)
{
    listen ??= configuration.GetTunnelEndpoint(TunnelSide.Host);
    IReadOnlyList<GatewayEnclave> enclaves;
    string auditNote;
    try
    {
        enclaves = EgressServiceCollectionExtensions.LoadHostEnclaves(configuration, listen, Console.Error.WriteLine);
        auditNote = CheckAuditLog(configuration);
    }
    catch (ConfigurationException ex)
    {
        Console.Error.WriteLine(ex.Message);
        return HostRuntime.UsageError;
    }

    var output = Console.Out;
    output.WriteLine($"{configPath}: valid for egress-host (checked without binding or starting anything)");
    if (enclaves.Count == 0)
    {
        output.WriteLine($"  policy {HostLog.Describe(policyDigest)}");
    }

    foreach (GatewayEnclave enclave in enclaves)
    {
        output.WriteLine($"  enclave {(enclave.Cid is null ? "any CID" : $"CID {enclave.Label}")}: {enclave.Description}");
    }

    if (configuration.Host.InternalNetworks.Count > 0)
    {
        output.WriteLine($"  internal networks besides the built-in ranges: {string.Join(", ", configuration.Host.InternalNetworks)} ([host] internal_networks)");
    }

    output.WriteLine($"  tunnel: {listen}{TunnelDirectoryNote(listen)}");
    (IReadOnlyList<IPEndPoint> dns, string source) = upstreams.Length > 0 ? (upstreams, "--dns-upstream")
        : configuration.Host.DnsUpstreams.Count > 0 ? (configuration.Host.DnsUpstreams, "[host] dns_upstreams")
        : (SystemDnsResolvers.Find(), "this machine's resolv.conf");
    output.WriteLine(dns.Count > 0
        ? $"  DNS upstreams: {string.Join(", ", dns)} ({source})"
        : $"  DNS upstreams: none ({source} names none): every DNS query would be answered SERVFAIL");
    output.WriteLine($"  metrics: {(metricsListen is null ? "off" : $"http://{metricsListen}/metrics")}");
    output.WriteLine($"  audit log: {auditNote}");
    return 0;
}

// A Unix tunnel socket's directory that is missing now: a start would fail (TunnelEndpoint.Listen creates the socket, not
// its directory), unless something creates it first (a unit's RuntimeDirectory=), so said, not refused.
static string TunnelDirectoryNote(TunnelEndpoint listen) =>
    listen.EndPoint is UnixDomainSocketEndPoint unix && Path.GetDirectoryName(unix.ToString()) is { Length: > 0 } directory && !Directory.Exists(directory)
        ? $" (warning: its directory {directory} does not exist now: a start fails unless it is created first)"
        : string.Empty;

// The audit log's line of the summary; ConfigurationException, located at the key, where a start could not open it.
// The shipped unit (deploy/host/egress-host.service) creates /var/log/egress and can write nowhere else
// (ProtectSystem=strict): said for any other file, since the check runs outside the unit.
static string CheckAuditLog(EgressConfiguration configuration)
{
    if (configuration.Host.AuditLog is not { } target)
    {
        return "off";
    }

    const string LogsDirectory = "/var/log/egress";
    if (AuditLogTarget.Check(target, (LogsDirectory, "the shipped systemd unit (LogsDirectory=egress)"), out string summary) is { } problem)
    {
        throw configuration.CreateException(ConfigurationKeys.HostAuditLog.Path, $"cannot open \"{target}\" for the audit log: {problem}");
    }

    return target == AuditLog.StandardOutput || Path.GetFullPath(target).StartsWith(LogsDirectory + "/", StringComparison.Ordinal)
        ? summary
        : $"{summary}; under the shipped systemd unit only {LogsDirectory}/ is writable";
}

static int Fail(string message)
{
    Console.Error.WriteLine($"error: {message}");
    return HostRuntime.UsageError;
}
