using System.Diagnostics.Metrics;
using System.Net.Sockets;
using Egress.Configuration;
using Egress.Diagnostics;
using Egress.Dns;
using Egress.Enclave.Check;
using Egress.Enclave.Rules;
using Egress.Hosting;
using Egress.Policy;
using Egress.Proxy;
using Egress.Tunnel;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

const string Usage = """
    egress-enclave: transparent, allowlisted egress for an AWS Nitro Enclave (the enclave side).

    Usage:
      egress-enclave [--config PATH] [--tunnel ENDPOINT] [--log-level LEVEL] [--log-format text|json]
          Run the egress proxy and the DNS forwarder until SIGTERM or SIGINT. Every outbound TCP connection
          redirected by the rules is checked against [egress] destinations and carried to egress-host on the
          parent through the tunnel. The DNS forwarder listens on [enclave] dns_listen (default 127.0.0.1:53,
          UDP and TCP; point the enclave's resolv.conf at it): names outside the allowlist get NXDOMAIN
          (with an RFC 8914 Extended DNS Error when the query has EDNS), allowed names are resolved by the
          parent and the answered addresses become allowed for their TTL (plus [dns] grace). On SIGTERM/SIGINT it stops accepting, lets live connections finish for up to
          [relay] shutdown_drain_seconds (default 10), then aborts the rest and exits 0.
      egress-enclave check TARGET [--config PATH]
          Explain what the policy says about TARGET (NAME, IP, NAME:PORT, IPv4:PORT or [IPv6]:PORT): for a
          name, whether DNS answers it and which entry matched; for an address, whether a connection is
          allowed and why. Static rules only (no live cache). Exit 0 allowed, 1 denied.
      egress-enclave rules [--apply | --remove] [--config PATH] [--netfilter auto|nft|legacy] [--force]
          Print (default), apply idempotently, or remove the routing and iptables rules that redirect all
          outbound TCP to the proxy at [enclave] proxy_listen (per family its loopback endpoint, e.g.
          127.0.0.1:4444 and [::1]:4444; a family it does not listen in is redirected to a loopback port where
          nothing listens, so it is refused, never let through). Applying and
          removing need root. The iptables rules go into the netfilter backend named by --netfilter or
          [enclave] netfilter; auto (the default) probes: nf_tables (iptables-nft) where it works, else the
          legacy tables (iptables-legacy; the Nitro enclave kernel has no nf_tables), keeping rules already in
          the legacy tables there. A "netfilter: ..." line says which and why. --remove removes the rules from
          every backend that works (auto) or from the one named. --apply ends with one line per redirect
          target, "proxy: ADDRESS:PORT (...)": where the proxy must listen (scripts wait for it there).
          --force applies them even where interfaces other than lo exist.

    Options:
      --config PATH        enclave.toml (default: ./enclave.toml)
      --tunnel ENDPOINT    where egress-host listens, overriding [tunnel] enclave_endpoint (default
                           vsock://3:4433; CID 3 is the parent); tests: unix:/path, tcp://127.0.0.1:4433
      --log-level LEVEL    Trace, Debug, Information (default), Warning, Error or Critical
      --log-format FORMAT  text (default): one line per event, "2025-01-31T12:00:00.000Z info: Category[id] message";
                           json: one JSON object per line (Timestamp, EventId, LogLevel, Category, Message, State)
      --netfilter BACKEND  rules only: auto, nft or legacy, overriding [enclave] netfilter (default auto)
      --apply, --remove    rules only: apply or remove the rules instead of printing them
      --force              rules only: apply even where network interfaces other than lo exist
      -h, --help           show this help
      --version            print the version (with the git commit it was built from), the .NET runtime and
                           the RID, and exit

    Examples:
      egress-enclave rules --apply --config /etc/egress/enclave.toml && egress-enclave --config /etc/egress/enclave.toml
      egress-enclave check api.stripe.com:443 --config enclave.toml
      egress-enclave --tunnel unix:/tmp/egress.sock --log-format json --log-level Debug

    Metrics: meter "Egress" (connections, relayed bytes, DNS queries, tunnel errors, learned addresses), readable
    with dotnet-counters monitor --counters Egress -n egress-enclave.

    Exit codes: 0 stopped cleanly (or check: allowed; rules: done), 1 runtime failure (a listener cannot bind;
    check: denied; rules: a command failed, no root, or no working netfilter backend), 2 bad command line or
    configuration (the message names file:line:col).
    """;

HostRuntime.PreferInlineSocketCompletions();

// --proxy-port is still recognised, only to say where the port comes from now.
var command = HostRuntime.ParseCommandLine(args, Usage, ["--proxy-port", "--netfilter"], ["--apply", "--remove", "--force"], out var exitCode);
if (command is null)
{
    return exitCode;
}

if (command.Value("--proxy-port") is not null)
{
    return Fail("--proxy-port is gone: rules redirect to the proxy's [enclave] proxy_listen addresses, read from --config PATH");
}

var verb = command.Positional.Count > 0 ? command.Positional[0] : "run";
if (verb != "rules" && (command.Has("--apply") || command.Has("--remove") || command.Has("--force") || command.Value("--netfilter") is not null))
{
    return Fail("--apply, --remove, --force and --netfilter belong to the 'rules' command");
}

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
    return RunRules(command);
}

if (!HostRuntime.TryReadLogging(command, out var logLevel, out var jsonLogs))
{
    return HostRuntime.UsageError;
}

var configuration = HostRuntime.LoadConfiguration(command.Value("--config"), Console.Error);
if (configuration is null)
{
    return HostRuntime.UsageError;
}

TunnelEndpoint tunnel;
AllowlistCache cache;
EgressPolicy policy;
PolicyDigest policyDigest;
try
{
    cache = configuration.CreateCache();
    policy = configuration.CreatePolicy(cache);
    policyDigest = configuration.GetPolicyDigest();
    tunnel = configuration.GetTunnelEndpoint(TunnelSide.Enclave, command.Value("--tunnel"));
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

var builder = HostRuntime.CreateBuilder(logLevel, jsonLogs, configuration.Relay.ShutdownDrain);
builder.Services.AddSingleton(services => new EgressMetrics(services.GetRequiredService<IMeterFactory>(), "enclave", cache));
builder.Services.AddSingleton(services => new EgressProxy(
    new EgressProxyOptions
    {
        Listen = configuration.Enclave.ProxyListen,
        Tunnel = tunnel,
        StatusTimeout = configuration.Tunnel.StatusTimeout,
        Relay = configuration.CreateRelayOptions(),
        ShutdownDrain = configuration.Relay.ShutdownDrain,
        Metrics = services.GetRequiredService<EgressMetrics>(),
    },
    policy,
    services.GetRequiredService<ILoggerFactory>()));
builder.Services.AddSingleton(services => new DnsForwarder(
    new DnsForwarderOptions
    {
        Listen = configuration.Enclave.DnsListen,
        Tunnel = tunnel,
        QueryTimeout = configuration.Enclave.DnsQueryTimeout,
        StatusTimeout = configuration.Tunnel.StatusTimeout,
        Metrics = services.GetRequiredService<EgressMetrics>(),
    },
    policy,
    services.GetRequiredService<ILoggerFactory>()));
builder.Services.AddSingleton<IHostedService>(services =>
{
    var proxy = services.GetRequiredService<EgressProxy>();
    return new ListenerService(
        proxy.Start,
        proxy.StopAsync,
        ex => ex is SocketException socketError ? $"cannot listen on {string.Join(", ", configuration.Enclave.ProxyListen)}: {socketError.Message}" : null);
});
builder.Services.AddSingleton<IHostedService>(services =>
{
    var dns = services.GetRequiredService<DnsForwarder>();
    return new ListenerService(dns.Start, dns.StopAsync, DescribeDnsBindFailure);
});

using var host = builder.Build();
HostRuntime.LogStart(host, "Egress.Enclave", policyDigest);
return await HostRuntime.RunAsync(host);

string? DescribeDnsBindFailure(Exception exception)
{
    if (exception is not SocketException ex)
    {
        return null;
    }

    var dnsListen = configuration.Enclave.DnsListen;
    var privileged = dnsListen.Any(e => e.Port is > 0 and < 1024)
        ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        : string.Empty;
    return $"cannot listen for DNS on {string.Join(", ", dnsListen)} (UDP and TCP): {ex.Message}{privileged}; "
        + "is another resolver (systemd-resolved, dnsmasq) bound there? Change [enclave] dns_listen or stop it.";
}

static int RunRules(CommandLine command)
{
    foreach (var option in (string[])["--tunnel", "--log-level", "--log-format"])
    {
        if (command.Value(option) is not null)
        {
            return Fail($"{option} does not apply to 'rules'");
        }
    }

    if (command.Has("--apply") && command.Has("--remove"))
    {
        return Fail("--apply and --remove exclude each other");
    }

    NetfilterBackend? netfilterOption = null;
    if (command.Value("--netfilter") is { } netfilterText)
    {
        if (!NetfilterSelector.TryParse(netfilterText, out var parsed))
        {
            return Fail($"--netfilter '{netfilterText}' is not auto, nft (nf_tables, iptables-nft) or legacy (iptables-legacy)");
        }

        netfilterOption = parsed;
    }

    var configuration = HostRuntime.LoadConfiguration(command.Value("--config"), Console.Error);
    if (configuration is null)
    {
        return HostRuntime.UsageError;
    }

    IReadOnlyList<System.Net.IPEndPoint> targets, dnsTargets;
    var key = "enclave.proxy_listen";
    try
    {
        targets = RedirectRules.Targets(configuration.Enclave.ProxyListen);
        key = "enclave.dns_listen";
        dnsTargets = RedirectRules.Targets(configuration.Enclave.DnsListen, "DNS forwarder");
    }
    catch (ArgumentException ex)
    {
        Console.Error.WriteLine(configuration.CreateException(key, ex.Message).Message);
        return HostRuntime.UsageError;
    }

    var settings = netfilterOption is { } chosen
        ? new RulesSettings(targets, dnsTargets, chosen, "set by --netfilter")
        : new RulesSettings(targets, dnsTargets, configuration.Enclave.Netfilter, $"set by [enclave] netfilter in {configuration.GetLocation("enclave.netfilter")?.ToString() ?? configuration.SourceName}");
    var rules = new RulesCommand(Console.Out, Console.Error, ProcessRunner.Instance, RulesEnvironment.Current());
    return command.Has("--apply") ? rules.Apply(settings, command.Has("--force"))
        : command.Has("--remove") ? rules.Remove(settings)
        : rules.Print(settings);
}

static int Fail(string message)
{
    Console.Error.WriteLine($"error: {message}");
    return HostRuntime.UsageError;
}
