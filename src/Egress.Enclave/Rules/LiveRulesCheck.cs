using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Egress.Enclave.Rules;

/// <summary>
/// What egress-enclave checks once its listeners are bound: whether the redirect rules in the kernel's nat OUTPUT chain
/// send TCP and DNS to its own <c>proxy_listen</c> and <c>dns_listen</c> targets. A trial started the proxy on port
/// 5555 where <c>rules --apply</c> had been run for 4444: it logged <c>proxy listening on 127.0.0.1:5555</c>, every
/// application connection was refused at 4444, and neither host logged anything. The chain is read as <c>rules</c> reads
/// it (<see cref="NetfilterSelector"/> with the purpose of a remove: every backend that may hold rules, never creating a
/// legacy nat table; <see cref="NatOutput.Read"/>: one <c>-S OUTPUT</c> per family and backend, the probe's own run
/// reused). Per family, TCP (and DNS) is taken to reach this process when a DNAT rule to its target is there and no
/// other DNAT rule of the same kind could match first (one before it, or one in another backend). Otherwise one
/// warning says what was found, what this configuration needs and the commands that fix it; where the chain cannot be
/// read (not root, no iptables, no working backend) one Information line says so and why. It never throws: a check
/// that fails is a line, never a reason not to run.
/// </summary>
internal sealed class LiveRulesCheck(ICommandRunner runner, Func<RulesEnvironment> environment)
{
    /// <summary>
    /// Reads nat OUTPUT and logs what it found against <paramref name="settings"/> (null, with
    /// <paramref name="settingsProblem"/>, when the listen addresses give no redirect targets).
    /// <paramref name="configPath"/> is the file named in the commands the warning gives.
    /// </summary>
    public void Run(RulesSettings? settings, string? settingsProblem, string configPath, ILogger logger)
    {
        const string Loopback = "TCP and DNS to loopback addresses of proxy_listen and dns_listen";
        if (settings is null)
        {
            LiveRulesLog.NotChecked(logger, settingsProblem ?? "no redirect targets", Loopback, configPath);
            return;
        }

        List<Target> expected = [];
        try
        {
            expected = Expected(settings);
            Check(settings, environment(), expected, configPath, logger);
        }
        catch (Exception ex)
        {
            LiveRulesLog.NotChecked(logger, $"{ex.GetType().Name}: {ex.Message}", expected.Count > 0 ? Describe(expected, named: true) : Loopback, configPath);
        }
    }

    private void Check(RulesSettings settings, RulesEnvironment here, IReadOnlyList<Target> expected, string configPath, ILogger logger)
    {
        var families = here.IPv6Enabled ? new[] { false, true } : [false];
        expected = [.. expected.Where(e => families.Contains(e.IsIPv6))];
        string needed = Describe(expected, named: true);
        if (!here.IsPrivileged)
        {
            LiveRulesLog.NotChecked(logger, "reading nat OUTPUT needs root, as rules --apply does", needed, configPath);
            return;
        }

        var once = new OnceRunner(runner);
        var selection = new NetfilterSelector(once, here.LegacyNatInUse)
            .Select(settings.Netfilter, settings.NetfilterSource, NetfilterPurpose.Remove, _ => false);
        if (selection.Error is not null)
        {
            LiveRulesLog.NotChecked(logger, selection.Error, needed, configPath);
            return;
        }

        // Every DNAT rule read, in order: backend by backend (as the selection lists them), IPv4 before IPv6.
        var found = new List<(int Backend, bool IsIPv6, string Program, NatRedirect Redirect)>();
        var read = new List<string>();
        var failures = new List<string>();
        var unread = new HashSet<bool>();
        for (int b = 0; b < selection.Backends.Count; b++)
        {
            foreach (var ipv6 in families)
            {
                string program = ipv6 ? selection.Backends[b].IPv6 : selection.Backends[b].IPv4;
                if (NatOutput.Read(once, program, out var failure) is { } redirects)
                {
                    read.Add(program);
                    found.AddRange(redirects.Select(r => (b, ipv6, program, r)));
                }
                else
                {
                    failures.Add(failure);
                    unread.Add(ipv6);
                }
            }
        }

        if (failures.Count > 0)
        {
            LiveRulesLog.NotChecked(logger, string.Join("; ", failures), needed, configPath);
            expected = [.. expected.Where(e => !unread.Contains(e.IsIPv6))];
            if (expected.Count == 0)
            {
                return;
            }

            needed = Describe(expected, named: true); // of the families read
        }

        string programs = selection.Backends.Count == 0
            ? "netfilter legacy, where no legacy nat table is in use"
            : string.Join(", ", read);

        // Where this process's TCP or DNS does not arrive: its target is missing in that family, or another DNAT rule
        // of the same kind may match first (before it in the same backend, or anywhere in another backend).
        var unreached = expected.Where(e =>
        {
            var sameKind = found.Where(f => f.IsIPv6 == e.IsIPv6 && f.Redirect.IsDns == e.IsDns).ToList();
            int ours = sameKind.FindIndex(f => f.Redirect.Target == e.Address);
            return ours < 0 || sameKind.Where((f, i) => f.Redirect.Target != e.Address && (f.Backend != sameKind[ours].Backend || i < ours)).Any();
        }).ToList();
        if (unreached.Count == 0)
        {
            LiveRulesLog.InPlace(logger, programs, needed);
            return;
        }

        // rules --apply refuses while any DNAT rule to another target is there, wherever it is in the chain.
        bool others = found.Any(f => !expected.Any(e => e.IsIPv6 == f.IsIPv6 && e.Address == f.Redirect.Target));
        var foundTargets = found.Select(f => new Target(f.IsIPv6, f.Redirect.IsDns, f.Redirect.Target.Length > 0 ? f.Redirect.Target : "(no --to-destination)")).ToList();
        string fix = others
            ? $"replaced: egress-enclave rules --remove --config OLD (OLD: the file they were applied with), then egress-enclave rules --apply --config {configPath}"
            : $"applied: egress-enclave rules --apply --config {configPath}";
        LiveRulesLog.Mismatch(
            logger,
            programs,
            foundTargets.Count == 0 ? "holds no redirect" : "redirects " + Describe(foundTargets, named: false),
            configPath,
            needed,
            Unreached(unreached, families.Length == 2),
            fix);
    }

    /// <summary>The DNAT targets this configuration's rules name, per family and kind, in the rules' order.</summary>
    private static List<Target> Expected(RulesSettings settings) =>
        [.. settings.Rules()
            .Where(r => r.Program is "iptables" or "ip6tables" && NatOutput.DnatTarget(r.Add) is { Length: > 0 })
            .Select(r => new Target(r.IsIPv6, NatOutput.IsDns(r.Add), NatOutput.DnatTarget(r.Add)!))
            .Distinct()];

    /// <summary><c>TCP to 127.0.0.1:4444, [::1]:4444 (proxy_listen) and DNS to 127.0.0.1:53, [::1]:53 (dns_listen)</c>,
    /// with the keys <paramref name="named"/> (what this configuration needs) or without (what was found).</summary>
    private static string Describe(IReadOnlyList<Target> targets, bool named)
    {
        var parts = new List<string>(2);
        foreach (var (dns, kind, key) in new[] { (false, "TCP", "proxy_listen"), (true, "DNS", "dns_listen") })
        {
            var addresses = targets.Where(t => t.IsDns == dns).Select(t => t.Address).Distinct().ToList();
            if (addresses.Count > 0)
            {
                parts.Add($"{kind} to {string.Join(", ", addresses)}{(named ? $" ({key})" : string.Empty)}");
            }
        }

        return string.Join(" and ", parts);
    }

    /// <summary><c>outbound TCP connections and IPv6 DNS queries</c>: what does not arrive, per kind, naming the family
    /// only when one of two is concerned.</summary>
    private static string Unreached(IReadOnlyList<Target> unreached, bool twoFamilies)
    {
        var parts = new List<string>(2);
        foreach (var (dns, what) in new[] { (false, "TCP connections"), (true, "DNS queries") })
        {
            var families = unreached.Where(t => t.IsDns == dns).Select(t => t.IsIPv6).Distinct().ToList();
            if (families.Count > 0)
            {
                string family = twoFamilies && families.Count == 1 ? (families[0] ? "IPv6 " : "IPv4 ") : string.Empty;
                parts.Add($"{family}{what}");
            }
        }

        return "Outbound " + string.Join(" and ", parts);
    }

    /// <summary>A DNAT target of one family and kind (DNS or other TCP).</summary>
    private sealed record Target(bool IsIPv6, bool IsDns, string Address);

    /// <summary>Runs each distinct command once: the netfilter probe's <c>-S OUTPUT</c> is also the listing.</summary>
    private sealed class OnceRunner(ICommandRunner inner) : ICommandRunner
    {
        private readonly Dictionary<string, ProcessResult> results = new(StringComparer.Ordinal);

        public bool Exists(string program) => inner.Exists(program);

        public ProcessResult Run(string program, IReadOnlyList<string> arguments)
        {
            string key = string.Join('\0', [program, .. arguments]);
            if (!results.TryGetValue(key, out var result))
            {
                results[key] = result = inner.Run(program, arguments);
            }

            return result;
        }
    }
}

/// <summary>
/// Runs <see cref="LiveRulesCheck"/> once the listeners registered before it are bound (hosted services start in
/// order), on the thread pool: a slow iptables (waiting for the xtables lock) never delays the start. A stop waits
/// for it briefly, so that its line comes before <c>stopped</c>.
/// </summary>
internal sealed class LiveRulesCheckService(Action check) : IHostedService
{
    private static readonly TimeSpan StopWait = TimeSpan.FromSeconds(2);

    private Task? running;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        running = Task.Run(check, CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (running is null)
        {
            return;
        }

        try
        {
            await running.WaitAsync(StopWait, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            // A check still waiting for iptables: the stop goes on without it.
        }
    }
}

/// <summary>The lines of <see cref="LiveRulesCheck"/> (category <c>Egress.Enclave</c>).</summary>
internal static partial class LiveRulesLog
{
    [LoggerMessage(EventId = 10, Level = LogLevel.Warning, Message = "redirect rules do not match this configuration: nat OUTPUT ({Programs}) {Found}; {Config} needs {Expected}. {Unreached} are not reaching egress-enclave until the rules are {Fix}")]
    public static partial void Mismatch(ILogger logger, string programs, string found, string config, string expected, string unreached, string fix);

    [LoggerMessage(EventId = 19, Level = LogLevel.Information, Message = "redirect rules not checked: {Reason}. Connections reach egress-enclave only where nat OUTPUT redirects {Expected} (egress-enclave rules --config {Config} prints the rules)")]
    public static partial void NotChecked(ILogger logger, string reason, string expected, string config);

    [LoggerMessage(EventId = 20, Level = LogLevel.Debug, Message = "redirect rules match this configuration: nat OUTPUT ({Programs}) redirects {Expected}, and no redirect elsewhere comes before them (rules that end the chain without one, RETURN or ACCEPT, are not read)")]
    public static partial void InPlace(ILogger logger, string programs, string expected);
}
