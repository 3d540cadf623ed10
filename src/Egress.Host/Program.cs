using System.Net;
using Egress.Configuration;
using Egress.Gateway;
using Egress.Hosting;
using Egress.Host;
using Egress.Relay;

const string Usage = """
    egress-host: transparent, allowlisted egress for AWS Nitro Enclaves (the parent instance side).

    Usage:
      egress-host [--config PATH] [--tunnel ENDPOINT] [--dns-upstream IP[:PORT]]... [--log-level LEVEL]
          Accept tunnel streams from egress-enclave, re-check every destination against the same enclave.toml
          (internal ranges such as 169.254.169.254 are refused unless listed by IP/CIDR), dial it and relay.
          DNS streams: every query's name is re-checked (REFUSED when not allowed), forwarded to the upstream
          resolvers (UDP, TCP when truncated, failing over in order within [host] dns_timeout_ms), and the
          answered addresses are learned so connections to them are allowed.

    Options:
      --config PATH        enclave.toml (default: ./enclave.toml), the same file the enclave uses
      --tunnel ENDPOINT    where to listen, overriding [tunnel] host_endpoint:
                           vsock://any:4433 (production), unix:/path, tcp://127.0.0.1:4433
      --dns-upstream IP[:PORT]
                           a resolver to forward DNS queries to (repeatable, tried in order; port 53 by
                           default; IPv6 as [addr]:port); overrides [host] dns_upstreams. Without either,
                           the parent's own resolvers from its resolv.conf are used
      --log-level LEVEL    Trace, Debug, Information (default), Warning, Error
      -h, --help           show this help

    Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad command line or configuration.
    """;

var command = CommandLine.Parse(
    args,
    optionsWithValue: new HashSet<string> { "--config", "--tunnel", "--log-level", "--dns-upstream" },
    flags: new HashSet<string> { "--help" },
    out var parseError);
if (command is null)
{
    Console.Error.WriteLine($"error: {parseError}");
    return HostRuntime.UsageError;
}

if (command.Has("--help"))
{
    Console.WriteLine(Usage);
    return 0;
}

if (command.Positional.Count > 0)
{
    Console.Error.WriteLine($"error: unexpected argument '{command.Positional[0]}' (see --help)");
    return HostRuntime.UsageError;
}

if (!HostRuntime.IsValidLogLevel(command.Value("--log-level")))
{
    Console.Error.WriteLine($"error: --log-level '{command.Value("--log-level")}' is not one of Trace, Debug, Information, Warning, Error");
    return HostRuntime.UsageError;
}

var configuration = HostRuntime.LoadConfiguration(command.Value("--config"), Console.Error);
if (configuration is null)
{
    return HostRuntime.UsageError;
}

var upstreams = new List<IPEndPoint>();
foreach (var text in command.Values("--dns-upstream"))
{
    if (!DnsUpstreamText.TryParse(text, out var upstream))
    {
        Console.Error.WriteLine($"error: --dns-upstream '{text}' is not IPv4[:PORT], IPv6 or [IPv6]:PORT");
        return HostRuntime.UsageError;
    }

    upstreams.Add(upstream);
}

TunnelGatewayOptions options;
Egress.Policy.EgressPolicy policy;
try
{
    policy = configuration.CreatePolicy(configuration.CreateCache());
    options = new TunnelGatewayOptions
    {
        Listen = configuration.GetTunnelEndpoint(TunnelSide.Host, command.Value("--tunnel")),
        HeaderTimeout = configuration.Host.HeaderTimeout,
        ConnectTimeout = configuration.Host.ConnectTimeout,
        Relay = new RelayOptions { IdleTimeout = configuration.Relay.IdleTimeout },
        DnsUpstreams = upstreams.Count > 0 ? upstreams : configuration.Host.DnsUpstreams,
        DnsTimeout = configuration.Host.DnsTimeout,
    };
}
catch (ConfigurationException ex)
{
    Console.Error.WriteLine(ex.Message);
    return HostRuntime.UsageError;
}
catch (FormatException ex)
{
    Console.Error.WriteLine($"error: --tunnel: {ex.Message}");
    return HostRuntime.UsageError;
}

using var loggerFactory = HostRuntime.CreateLoggerFactory(command.Value("--log-level"));
await using var gateway = new TunnelGateway(options, policy, loggerFactory);
try
{
    gateway.Start();
}
catch (Exception ex) when (ex is System.Net.Sockets.SocketException or IOException)
{
    Console.Error.WriteLine($"error: cannot listen on {options.Listen}: {ex.Message}");
    return 1;
}

var stop = HostRuntime.WaitForStopSignalAsync(out var signals);
using (signals)
{
    await stop;
}

await gateway.StopAsync();
return 0;
