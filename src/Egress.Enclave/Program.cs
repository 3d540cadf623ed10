using Egress.Configuration;
using Egress.Dns;
using Egress.Enclave.Check;
using Egress.Enclave.Rules;
using Egress.Hosting;
using Egress.Interception;
using Egress.Proxy;
using Egress.Relay;

const string Usage = """
    egress-enclave: transparent, allowlisted egress for an AWS Nitro Enclave (the enclave side).

    Usage:
      egress-enclave [--config PATH] [--tunnel ENDPOINT] [--log-level LEVEL]
          Run the egress proxy and the DNS forwarder. Every outbound TCP connection redirected by the rules is
          checked against [egress] destinations and carried to egress-host on the parent through the tunnel.
          The DNS forwarder listens on [enclave] dns_listen (default 127.0.0.1:53, UDP and TCP; point the
          enclave's resolv.conf at it): names outside the allowlist get REFUSED, allowed names are resolved by
          the parent and the answered addresses become allowed for their TTL (plus [dns] grace).
      egress-enclave check TARGET [--config PATH]
          Explain what the policy says about TARGET (NAME, IP, NAME:PORT, IPv4:PORT or [IPv6]:PORT): for a
          name, whether DNS answers it and which entry matched; for an address, whether a connection is
          allowed and why. Static rules only (no live cache). Exit 0 allowed, 1 denied.
      egress-enclave rules [--apply | --remove] [--proxy-port PORT] [--force]
          Print (default), apply idempotently, or remove the routing and iptables rules that redirect all
          outbound TCP to the proxy. Needs root. --force applies them even where interfaces other than lo exist.

    Options:
      --config PATH        enclave.toml (default: ./enclave.toml)
      --tunnel ENDPOINT    where egress-host listens, overriding [tunnel] enclave_endpoint:
                           vsock://3:4433 (production; CID 3 is the parent), unix:/path, tcp://127.0.0.1:4433
      --log-level LEVEL    Trace, Debug, Information (default), Warning, Error
      -h, --help           show this help

    Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad command line or configuration.
    """;

var command = CommandLine.Parse(
    args,
    optionsWithValue: new HashSet<string> { "--config", "--tunnel", "--log-level", "--proxy-port" },
    flags: new HashSet<string> { "--help", "--apply", "--remove", "--force" },
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

var verb = command.Positional.Count > 0 ? command.Positional[0] : "run";
if (verb == "check")
{
    if (command.Positional.Count != 2)
    {
        return Fail("check needs exactly one TARGET (NAME, IP, NAME:PORT, IPv4:PORT or [IPv6]:PORT)");
    }

    if (!CheckTarget.TryParse(command.Positional[1], out var target, out var targetError))
    {
        return Fail($"check: {targetError}");
    }

    var checkedConfiguration = HostRuntime.LoadConfiguration(command.Value("--config"), Console.Error);
    if (checkedConfiguration is null)
    {
        return HostRuntime.UsageError;
    }

    try
    {
        var checkedPolicy = checkedConfiguration.CreatePolicy(checkedConfiguration.CreateCache());
        return new CheckCommand(checkedConfiguration, checkedPolicy, Console.Out).Run(target);
    }
    catch (ConfigurationException ex)
    {
        Console.Error.WriteLine(ex.Message);
        return HostRuntime.UsageError;
    }
}

if (command.Positional.Count > 1 || verb is not ("run" or "rules"))
{
    Console.Error.WriteLine($"error: unexpected argument '{command.Positional[^1]}' (see --help)");
    return HostRuntime.UsageError;
}

if (verb == "rules")
{
    var portText = command.Value("--proxy-port");
    var port = RedirectRules.DefaultProxyPort;
    if (portText is not null && (!int.TryParse(portText, out port) || port is < 1 or > 65535))
    {
        Console.Error.WriteLine($"error: --proxy-port '{portText}' is not a port (1-65535)");
        return HostRuntime.UsageError;
    }

    var rules = new RulesCommand(Console.Out, Console.Error);
    return (command.Has("--apply"), command.Has("--remove")) switch
    {
        (true, true) => Fail("--apply and --remove exclude each other"),
        (true, false) => rules.Apply(port, command.Has("--force")),
        (false, true) => rules.Remove(port),
        _ => rules.Print(port),
    };
}

if (command.Has("--apply") || command.Has("--remove") || command.Has("--force") || command.Value("--proxy-port") is not null)
{
    return Fail("--apply, --remove, --force and --proxy-port belong to the 'rules' command");
}

if (!HostRuntime.IsValidLogLevel(command.Value("--log-level")))
{
    return Fail($"--log-level '{command.Value("--log-level")}' is not one of Trace, Debug, Information, Warning, Error");
}

var configuration = HostRuntime.LoadConfiguration(command.Value("--config"), Console.Error);
if (configuration is null)
{
    return HostRuntime.UsageError;
}

EgressProxyOptions options;
DnsForwarderOptions dnsOptions;
Egress.Policy.EgressPolicy policy;
try
{
    policy = configuration.CreatePolicy(configuration.CreateCache());
    options = new EgressProxyOptions
    {
        Listen = configuration.Enclave.ProxyListen,
        Tunnel = configuration.GetTunnelEndpoint(TunnelSide.Enclave, command.Value("--tunnel")),
        StatusTimeout = configuration.Tunnel.StatusTimeout,
        Relay = new RelayOptions { IdleTimeout = configuration.Relay.IdleTimeout },
    };
    dnsOptions = new DnsForwarderOptions
    {
        Listen = configuration.Enclave.DnsListen,
        Tunnel = options.Tunnel,
        QueryTimeout = configuration.Enclave.DnsQueryTimeout,
        StatusTimeout = configuration.Tunnel.StatusTimeout,
    };
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

using var loggerFactory = HostRuntime.CreateLoggerFactory(command.Value("--log-level"));
await using var proxy = new EgressProxy(options, policy, loggerFactory);
try
{
    proxy.Start();
}
catch (System.Net.Sockets.SocketException ex)
{
    Console.Error.WriteLine($"error: cannot listen on {string.Join(", ", options.Listen)}: {ex.Message}");
    return 1;
}

await using var dns = new DnsForwarder(dnsOptions, policy, loggerFactory);
try
{
    dns.Start();
}
catch (System.Net.Sockets.SocketException ex)
{
    var privileged = dnsOptions.Listen.Any(e => e.Port is > 0 and < 1024)
        ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        : string.Empty;
    Console.Error.WriteLine($"error: cannot listen for DNS on {string.Join(", ", dnsOptions.Listen)} (UDP and TCP): {ex.Message}{privileged}; "
        + "is another resolver (systemd-resolved, dnsmasq) bound there? Change [enclave] dns_listen or stop it.");
    return 1;
}

var stop = HostRuntime.WaitForStopSignalAsync(out var signals);
using (signals)
{
    await stop;
}

await Task.WhenAll(proxy.StopAsync(), dns.StopAsync());
return 0;

static int Fail(string message)
{
    Console.Error.WriteLine($"error: {message}");
    return HostRuntime.UsageError;
}
