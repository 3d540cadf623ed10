using System.Diagnostics.Metrics;
using System.Net.Sockets;
using Egress.Configuration;
using Egress.Diagnostics;
using Egress.Dns.Forwarder;
using Egress.Enclave.Check;
using Egress.Enclave.Report;
using Egress.Enclave.Rules;
using Egress.Hosting;
using Egress.Policy;
using Egress.Proxy;
using Egress.Tunnel;
using System.CommandLine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

const string Title = "egress-enclave: transparent, allowlisted egress for an AWS Nitro Enclave (the enclave side).";
const string Epilogue = """
    Examples:
      egress-enclave rules --apply --config /etc/egress/enclave.toml && egress-enclave --config /etc/egress/enclave.toml
      egress-enclave check api.stripe.com:443 --config enclave.toml
      egress-enclave --tunnel unix:/tmp/egress.sock --log-format json --log-level Debug
      egress-enclave report-to-allowlist enclave.log parent.log
      egress-enclave --config enclave.toml --check-config      # before building the image: valid? what would run?

    Metrics: meter "Egress" (connections, relayed bytes, DNS queries, tunnel errors, learned addresses), readable
    with dotnet-counters monitor --counters Egress -n egress-enclave.

    Exit codes: 0 stopped cleanly (or --check-config: valid; check: allowed; rules: done), 1 runtime failure (a
    listener cannot bind; check: denied; rules: a command failed, no root, or no working netfilter backend), 2 bad
    command line or configuration (the message names file:line:col).
    """;
const string CheckEpilogue = """
    Examples:
      egress-enclave check api.stripe.com:443 --config /etc/egress/enclave.toml
      egress-enclave check 169.254.169.254 --config enclave.toml
      egress-enclave check [2001:db8::10]:443 --config enclave.toml

    Exit codes: 0 allowed (in report mode also what only report mode allows), 1 denied (a name that gets NXDOMAIN, a
    port its entry does not allow, an address no entry allows: check has no learned addresses, so one only a DNS
    answer would allow counts as denied), 2 TARGET is neither an address nor a host name, or a bad command line or
    configuration (the message names file:line:col).
    """;
const string RulesEpilogue = """
    Examples:
      egress-enclave rules --config /etc/egress/enclave.toml
      egress-enclave rules --apply --config /etc/egress/enclave.toml
      egress-enclave rules --remove --netfilter legacy --config enclave.toml

    Exit codes: 0 rules printed, applied or removed, 1 not done: --apply or --remove without root, ip not on PATH,
    --apply where interfaces other than lo exist (without --force), no working netfilter backend (probed as root),
    or a command that failed (--apply first undoes what it added), 2 bad command line or configuration (the message
    names file:line:col).
    """;

HostRuntime.PreferInlineSocketCompletions();

// --config applies to the run, check and rules, before or after the verb (each lists it; report-to-allowlist, which
// reads no configuration, neither lists nor takes it); the retired --proxy-port to every verb; the run options only
// to the run.
var configOption = HostCommandLine.Config("enclave.toml (default: ./enclave.toml)");
var proxyPortOption = new Option<string?>("--proxy-port") { Hidden = true, Recursive = true };
proxyPortOption.Validators.Add(result => result.AddError("--proxy-port is gone: rules redirect to the proxy's [enclave] proxy_listen addresses, read from --config PATH"));
var tunnelOption = HostCommandLine.Tunnel(
    "where egress-host listens, overriding [tunnel] enclave_endpoint (default vsock://3:4433; CID 3 is the parent); tests: unix:/path, tcp://127.0.0.1:4433");
var logLevelOption = HostCommandLine.LogLevel();
var logFormatOption = HostCommandLine.LogFormat();
const string CheckConfigDescription = "check everything a start and rules --apply check of the file except binding (the file, the tunnel "
    + "endpoint, the listen addresses and the redirect targets; not the rules already in the kernel, which rules --apply compares), "
    + "print what would run, and exit: 0 valid, 2 not. Starts nothing";
var checkConfigOption = HostCommandLine.Flag("--check-config", CheckConfigDescription);
const string LearnedAddressesDescription = "keep the addresses learned from DNS answers in this file (an absolute path in a directory "
    + "only this user can write, else nothing is kept; bootstrap.sh makes a private one) and restore them at start, re-checked against the "
    + "policy: a restarted egress-enclave then allows what the run before it had learned, as an application that kept an address expects. Off by default";
var learnedAddressesOption = new Option<string?>("--learned-addresses") { Description = LearnedAddressesDescription, HelpName = "PATH" };

var root = new RootCommand("""
    Run the egress proxy and the DNS forwarder until SIGTERM or SIGINT. Every outbound TCP connection redirected by the
    rules is checked against [egress] destinations and carried to egress-host on the parent through the tunnel. The DNS
    forwarder listens on [enclave] dns_listen (default 127.0.0.1:53 and [::1]:53, UDP and TCP; point the enclave's resolv.conf at
    it): names outside the allowlist get NXDOMAIN (with an RFC 8914 Extended DNS Error when the query has EDNS),
    allowed names are resolved by the parent and the answered addresses become allowed for their TTL (plus [dns]
    grace). On SIGTERM/SIGINT it stops accepting, lets live connections finish for up to [relay]
    shutdown_drain_seconds (default 10), then aborts the rest and exits 0.
    """)
{
    configOption, proxyPortOption, tunnelOption, logLevelOption, logFormatOption, checkConfigOption, learnedAddressesOption,
};
root.SetAction((parse, _) => RunAsync(
    parse.GetValue(configOption), parse.GetValue(tunnelOption), parse.GetValue(logLevelOption), HostCommandLine.IsJson(parse.GetValue(logFormatOption)),
    parse.GetValue(checkConfigOption), parse.GetValue(learnedAddressesOption)));

// "run" spelled out, as the hand-written command line accepted it: the same as no verb, with options of its own.
var runTunnelOption = HostCommandLine.Tunnel(tunnelOption.Description!);
var runLogLevelOption = HostCommandLine.LogLevel();
var runLogFormatOption = HostCommandLine.LogFormat();
var runCheckConfigOption = HostCommandLine.Flag("--check-config", CheckConfigDescription);
var runLearnedAddressesOption = new Option<string?>("--learned-addresses") { Description = LearnedAddressesDescription, HelpName = "PATH" };
var run = new Command("run", "The same as no command: run the egress proxy and the DNS forwarder.")
{
    configOption, runTunnelOption, runLogLevelOption, runLogFormatOption, runCheckConfigOption, runLearnedAddressesOption,
};
run.SetAction((parse, _) => RunAsync(
    parse.GetValue(configOption), parse.GetValue(runTunnelOption), parse.GetValue(runLogLevelOption), HostCommandLine.IsJson(parse.GetValue(runLogFormatOption)),
    parse.GetValue(runCheckConfigOption), parse.GetValue(runLearnedAddressesOption)));
HostCommandLine.RefuseParentOptions(run, tunnelOption, logLevelOption, logFormatOption, checkConfigOption, learnedAddressesOption);
root.Subcommands.Add(run);

var targetArgument = new Argument<CheckTarget>("TARGET")
{
    Description = "NAME, IP, NAME:PORT, IPv4:PORT or [IPv6]:PORT",
    CustomParser = result =>
    {
        if (HostCommandLine.DescribeOptionLike(result) is { } optionLike)
        {
            result.AddError(optionLike);
            return null;
        }

        if (CheckTarget.TryParse(result.Tokens[0].Value, out var target, out var targetError))
        {
            return target;
        }

        result.AddError($"check: {targetError}");
        return null;
    },
};
var check = new Command("check", """
    Explain what the policy says about TARGET: for a name, whether DNS answers it and which entry matched; for an
    address, whether a connection is allowed and why. Static rules only (no live cache).
    """)
{
    targetArgument, configOption,
};
check.SetAction(parse => Check(parse.GetRequiredValue(targetArgument), parse.GetValue(configOption)));
HostCommandLine.RefuseParentOptions(check, tunnelOption, logLevelOption, logFormatOption, checkConfigOption);
root.Subcommands.Add(check);

var applyOption = HostCommandLine.Flag("--apply", "apply the rules (idempotently) instead of printing them; needs root");
var removeOption = HostCommandLine.Flag("--remove", "remove the rules instead of printing them; needs root");
var forceOption = HostCommandLine.Flag("--force", "apply even where network interfaces other than lo exist");
var netfilterOption = new Option<NetfilterBackend?>("--netfilter")
{
    Description = "the netfilter backend, overriding [enclave] netfilter (default auto)",
    HelpName = "auto|nft|legacy",
    CustomParser = result =>
    {
        var text = result.Tokens[0].Value;
        if (ConfigurationChoices.Netfilter.TryRead(text, out NetfilterBackend backend))
        {
            return backend;
        }

        result.AddError($"--netfilter '{text}': {ConfigurationChoices.Netfilter.Expected}");
        return null;
    },
};
var rules = new Command("rules", """
    Print (default), apply idempotently, or remove the routing and iptables rules that redirect all outbound TCP to
    the proxy at [enclave] proxy_listen (per family its loopback endpoint, e.g. 127.0.0.1:4444 and [::1]:4444; a
    family it does not listen in is redirected to a loopback port where nothing listens, so it is refused, never let
    through). The iptables rules go into the netfilter backend named by --netfilter or [enclave] netfilter; auto (the
    default) probes: nf_tables (iptables-nft) where it works, else the legacy tables (iptables-legacy; the Nitro
    enclave kernel has no nf_tables), keeping rules already in the legacy tables there. A "netfilter: ..." line says
    which and why. --remove removes the rules from every backend that works (auto) or from the one named. --apply
    ends with one line per redirect target, "proxy: ADDRESS:PORT (...)": where the proxy must listen (scripts wait
    for it there).
    """)
{
    applyOption, removeOption, netfilterOption, forceOption, configOption,
};
rules.Validators.Add(result =>
{
    if (result.GetValue(applyOption) && result.GetValue(removeOption))
    {
        result.AddError("--apply and --remove exclude each other");
    }

    if (result.GetValue(forceOption) && !result.GetValue(applyOption))
    {
        // Accepted and ignored before: a print or a remove never refuses where other interfaces exist.
        result.AddError("--force applies only with --apply");
    }
});
rules.SetAction(parse => RunRules(
    parse.GetValue(configOption), parse.GetValue(applyOption), parse.GetValue(removeOption), parse.GetValue(forceOption), parse.GetValue(netfilterOption)));
HostCommandLine.RefuseParentOptions(rules, tunnelOption, logLevelOption, logFormatOption, checkConfigOption);
root.Subcommands.Add(rules);

var logsArgument = new Argument<string[]>("LOG")
{
    Description = "log files of egress-enclave or egress-host (text or JSON lines); - or none: standard input",
    Arity = ArgumentArity.ZeroOrMore,
};
var reportToAllowlist = new Command("report-to-allowlist", """
    Turn the "report mode: would deny" lines that egress-enclave and egress-host log with [egress] mode = "report"
    into egress.destinations entries, one per line, sorted and unique: a name with the ports its connections used
    (api.example.com:443), a name without a port when only DNS questions were seen, an address with its ports when no
    name is known. Internal addresses and the parent's own, which report mode keeps denied, never appear. Exit 0; 1
    when the input held no would-deny line; 2 when a log cannot be read.
    """)
{
    logsArgument,
};
logsArgument.Validators.Add(result =>
{
    // The argument takes any token, so an option it does not know (e.g. --log-level after the verb) became a file name.
    if (HostCommandLine.DescribeOptionLike(result) is { } problem)
    {
        string word = result.Tokens.First(t => t.Value.Length > 1 && t.Value.StartsWith('-')).Value;
        result.AddError($"{problem}; a log file whose name starts with '-' is given as ./{word}");
    }
});
reportToAllowlist.SetAction(parse => RunReportToAllowlist(parse.GetValue(logsArgument) ?? []));
HostCommandLine.RefuseParentOptions(reportToAllowlist, configOption, tunnelOption, logLevelOption, logFormatOption, checkConfigOption);
root.Subcommands.Add(reportToAllowlist);

return await HostCommandLine.RunAsync(root, Title, new Dictionary<Command, string> { [root] = Epilogue, [check] = CheckEpilogue, [rules] = RulesEpilogue }, args);

static int RunReportToAllowlist(string[] paths)
{
    try
    {
        return new ReportToAllowlistCommand(Console.In, Console.Out, Console.Error).Run(paths);
    }
    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
    {
        // Not 1, which says the logs held no would-deny line: a script must tell a missing log from an empty report.
        Console.Error.WriteLine($"error: {ex.Message}");
        return HostRuntime.UsageError;
    }
}

// Where the redirect rules send TCP and DNS, from [enclave] proxy_listen and dns_listen; ConfigurationException, located
// at the key, for a listener no redirected connection could reach.
static (IReadOnlyList<System.Net.IPEndPoint> Proxy, IReadOnlyList<System.Net.IPEndPoint> Dns) RedirectTargets(EgressConfiguration configuration)
{
    var key = "enclave.proxy_listen";
    try
    {
        var proxy = RedirectRules.Targets(configuration.Enclave.ProxyListen);
        key = "enclave.dns_listen";
        return (proxy, RedirectRules.Targets(configuration.Enclave.DnsListen, "DNS forwarder"));
    }
    catch (UnreachableListenerException ex)
    {
        throw configuration.CreateException(key, ex.Message, ex.Index); // at the first address at fault
    }
    catch (ArgumentException ex)
    {
        throw configuration.CreateException(key, ex.Message);
    }
}

static int Check(CheckTarget target, string? configPath)
{
    var checkedConfiguration = HostRuntime.LoadConfiguration(configPath, Console.Error);
    if (checkedConfiguration is null)
    {
        return HostRuntime.UsageError;
    }

    try
    {
        var checkedPolicy = checkedConfiguration.CreatePolicy(checkedConfiguration.CreateCache());
        // What only a run or `rules` reads of the shared file is refused here as it would be there: one check of the
        // file finds what would stop either side from starting.
        checkedConfiguration.GetTunnelEndpoint(TunnelSide.Enclave);
        checkedConfiguration.GetTunnelEndpoint(TunnelSide.Host);
        _ = RedirectTargets(checkedConfiguration);
        return new CheckCommand(checkedConfiguration, checkedPolicy, Console.Out).Run(target);
    }
    catch (ConfigurationException ex)
    {
        Console.Error.WriteLine(ex.Message);
        return HostRuntime.UsageError;
    }
}

// What --check-config says of enclave.report_denials.
static string DenialReportsText(Egress.Denials.DenialDetail detail) => detail switch
{
    Egress.Denials.DenialDetail.Off => "off (enclave.report_denials; what this enclave denies stays in its own log)",
    Egress.Denials.DenialDetail.Counts => "counts by kind and reason every 10 s, no address or name (enclave.report_denials = \"counts\")",
    _ => "counts by kind, reason and destination every 10 s (enclave.report_denials = \"destinations\": denied addresses and names reach the parent's log)",
};

static async Task<int> RunAsync(string? configPath, string? tunnelText, LogLevel logLevel, bool jsonLogs, bool checkOnly, string? learnedAddresses)
{
    if (learnedAddresses is not null && LearnedAddressesProblem(learnedAddresses) is { } problem)
    {
        return Fail($"--learned-addresses: {problem}");
    }

    var configuration = HostRuntime.LoadConfiguration(configPath, Console.Error);
    if (configuration is null)
    {
        return HostRuntime.UsageError;
    }

    var builder = HostRuntime.CreateBuilder(logLevel, jsonLogs, configuration.Relay.ShutdownDrain);
    PolicyDigest policyDigest;
    TunnelEndpoint? tunnel;
    try
    {
        policyDigest = configuration.GetPolicyDigest();
        tunnel = tunnelText is null ? null : TunnelEndpoint.Parse(tunnelText);
        builder.Services.AddEgressEnclave(configuration, tunnel);
        AddLiveRulesCheck(builder.Services, configuration, configPath ?? "enclave.toml");
        if (checkOnly)
        {
            // What registration read and checked, and what `rules --apply` (the enclave's first step) reads: listeners no
            // redirected connection could reach are refused there. The audit log is opened in the enclave: a check
            // run before the image is built cannot look at that file system.
            var (proxy, dns) = RedirectTargets(configuration);
            string audit = configuration.Enclave.AuditLog is { } target && target != Egress.Audit.AuditLog.StandardOutput
                ? $"{target} (opened at start, in the enclave; not looked at here)"
                : configuration.Enclave.AuditLog ?? "off";
            var output = Console.Out;
            output.WriteLine($"{configPath ?? "enclave.toml"}: valid for egress-enclave (checked without binding or starting anything)");
            output.WriteLine($"  policy {HostLog.Describe(policyDigest)}");
            output.WriteLine($"  proxy: {string.Join(", ", configuration.Enclave.ProxyListen)} (redirect rules send TCP to {string.Join(", ", proxy)})");
            output.WriteLine($"  DNS forwarder: {string.Join(", ", configuration.Enclave.DnsListen)}, UDP and TCP (redirect rules send DNS to {string.Join(", ", dns)})");
            output.WriteLine($"  tunnel: {tunnel ?? configuration.GetTunnelEndpoint(TunnelSide.Enclave)}");
            output.WriteLine($"  audit log: {audit}");
            output.WriteLine($"  denial reports to the parent: {DenialReportsText(configuration.Enclave.ReportDenials)}");
            output.WriteLine($"  learned addresses kept for a restart: {(learnedAddresses is null ? "off (--learned-addresses)" : $"{learnedAddresses} (its directory is checked at start, in the enclave; not looked at here)")}");
            return 0;
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

    using var host = builder.Build();
    HostRuntime.LogStart(host, "Egress.Enclave", policyDigest);
    try
    {
        if (RulesEnvironment.ReadOtherInterfaces() is { Length: > 0 } interfaces)
        {
            HostLog.NotEnclaveShaped(host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Egress.Enclave"), string.Join(", ", interfaces));
        }
    }
    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
    {
        // /sys/class/net unreadable (a sandbox): the warning is advice, never a reason not to start.
    }

    // Restored before the listeners start, so that the first connection after a restart finds what the run before
    // learned; written until the host has stopped, and once more then.
    using var learned = learnedAddresses is null ? null : new LearnedAddressesFile(
        learnedAddresses, host.Services.GetRequiredService<EgressPolicy>(), TimeProvider.System,
        host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Egress.Policy"), LearnedAddressesFile.DefaultInterval);
    learned?.Restore();
    learned?.Start();
    return await HostRuntime.RunAsync(host);
}

// Why --learned-addresses cannot name a file (checked before anything starts, as a bad --tunnel is); null when it can.
// Its directory is looked at by the run (LearnedAddressesFile.Restore: one that is missing or that others can write keeps
// nothing, with a warning, and egress runs on), not here: --check-config runs where the image is built.
static string? LearnedAddressesProblem(string path) =>
    !Path.IsPathFullyQualified(path) ? $"'{path}' is not an absolute path"
    : string.IsNullOrEmpty(Path.GetFileName(path)) ? $"'{path}' names a directory, not a file"
    : null;

static int RunRules(string? configPath, bool apply, bool remove, bool force, NetfilterBackend? netfilterOption)
{
    var configuration = HostRuntime.LoadConfiguration(configPath, Console.Error);
    if (configuration is null)
    {
        return HostRuntime.UsageError;
    }

    IReadOnlyList<System.Net.IPEndPoint> targets, dnsTargets;
    try
    {
        (targets, dnsTargets) = RedirectTargets(configuration);
    }
    catch (ConfigurationException ex)
    {
        Console.Error.WriteLine(ex.Message);
        return HostRuntime.UsageError;
    }

    var settings = RulesSettingsOf(configuration, targets, dnsTargets, netfilterOption);
    var rules = new RulesCommand(Console.Out, Console.Error, ProcessRunner.Instance, RulesEnvironment.Current());
    return apply ? rules.Apply(settings, force)
        : remove ? rules.Remove(settings)
        : rules.Print(settings);
}

// What `rules` works from: the redirect targets and the netfilter backend, from --netfilter (rules only) or the file.
static RulesSettings RulesSettingsOf(
    EgressConfiguration configuration, IReadOnlyList<System.Net.IPEndPoint> targets, IReadOnlyList<System.Net.IPEndPoint> dnsTargets, NetfilterBackend? netfilterOption) =>
    netfilterOption is { } chosen
        ? new RulesSettings(targets, dnsTargets, chosen, "set by --netfilter")
        : new RulesSettings(targets, dnsTargets, configuration.Enclave.Netfilter, $"set by [enclave] netfilter in {configuration.GetLocation("enclave.netfilter")?.ToString() ?? configuration.SourceName}");

// The start's check of the redirect rules in the kernel against this configuration (LiveRulesCheck), registered after
// the listeners so that it runs once they are bound. A configuration rules --apply would refuse (no loopback listen
// address) still starts, as before; the check then says why it could not run.
static void AddLiveRulesCheck(IServiceCollection services, EgressConfiguration configuration, string configPath)
{
    RulesSettings? settings = null;
    string? problem = null;
    try
    {
        var (targets, dnsTargets) = RedirectTargets(configuration);
        settings = RulesSettingsOf(configuration, targets, dnsTargets, netfilterOption: null);
    }
    catch (ConfigurationException ex)
    {
        problem = ex.Message;
    }

    services.AddSingleton<IHostedService>(provider =>
    {
        var logger = provider.GetRequiredService<ILoggerFactory>().CreateLogger("Egress.Enclave");
        var check = new LiveRulesCheck(ProcessRunner.Instance, RulesEnvironment.Current);
        return new LiveRulesCheckService(() => check.Run(settings, problem, configPath, logger));
    });
}

static int Fail(string message)
{
    Console.Error.WriteLine($"error: {message}");
    return HostRuntime.UsageError;
}
