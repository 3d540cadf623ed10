using System.Net;
using System.Net.Sockets;
using Egress.Configuration;

namespace Egress.Enclave.Rules;

/// <summary>
/// What <c>rules</c> works from: where the proxy's redirected connections go (from <c>[enclave] proxy_listen</c>, see
/// <see cref="RedirectRules.Targets"/>), where redirected DNS goes (from <c>[enclave] dns_listen</c>, the same way) and
/// the netfilter backend setting with where it came from.
/// </summary>
internal sealed record RulesSettings(
    IReadOnlyList<IPEndPoint> ProxyTargets, IReadOnlyList<IPEndPoint> DnsTargets, NetfilterBackend Netfilter, string NetfilterSource)
{
    public IReadOnlyList<RedirectRule> Rules() => RedirectRules.For(ProxyTargets, DnsTargets);
}

/// <summary>
/// The facts about this machine that <c>rules</c> checks; <see cref="Current"/> reads the real ones.
/// <see cref="LegacyNatInUse"/> is asked when needed (see <see cref="NetfilterSelector"/>); <see cref="Sysctl"/> reads
/// and sets kernel parameters (see <see cref="TcpTimestamps"/>).
/// </summary>
internal sealed record RulesEnvironment(bool IsPrivileged, IReadOnlyList<string> OtherInterfaces, bool IPv6Enabled, Func<bool> LegacyNatInUse, ISysctl Sysctl)
{
    public static RulesEnvironment Current() =>
        new(Environment.IsPrivilegedProcess, ReadOtherInterfaces(), ReadIPv6Enabled(), NetfilterSelector.ReadLegacyNatInUse, ProcSysctl.Instance);

    /// <summary>This network namespace's interfaces other than <c>lo</c> (from /sys/class/net), by name; a Nitro enclave has none.</summary>
    public static string[] ReadOtherInterfaces() =>
        Directory.Exists("/sys/class/net")
            ? [.. Directory.GetDirectories("/sys/class/net").Select(d => Path.GetFileName(d)).Where(n => n != "lo").Order(StringComparer.Ordinal)]
            : [];

    private static bool ReadIPv6Enabled()
    {
        try
        {
            return File.Exists("/proc/net/if_inet6")
                && File.ReadAllText("/proc/sys/net/ipv6/conf/all/disable_ipv6").Trim() == "0";
        }
        catch (IOException)
        {
            return false;
        }
    }
}

/// <summary>
/// <c>egress-enclave rules [--apply | --remove]</c>: prints, applies (idempotently) or removes the redirect rules
/// from <see cref="RedirectRules"/>, with the iptables programs of the netfilter backend that works here
/// (<see cref="NetfilterSelector"/>). Applying is all or nothing: if a step fails, the steps this run added are
/// undone before it reports the failure, and an apply that finds DNAT rules to other targets in nat OUTPUT (an apply
/// with other listen addresses left them; appended after them, its own would never match) changes nothing and says
/// how to remove them. Apply also sets TCP timestamps without per-connection offsets
/// (<see cref="TcpTimestamps"/>); remove leaves that setting. A successful apply ends with one <c>proxy: ADDRESS:PORT ...</c> line per
/// redirect target, for scripts that wait for the proxy to listen there.
/// </summary>
internal sealed class RulesCommand(TextWriter output, TextWriter error, ICommandRunner runner, RulesEnvironment environment)
{
    private static readonly string[] LoopbackShowUp = ["link", "show", "dev", "lo", "up"];
    private static readonly string[] LoopbackUp = ["link", "set", "dev", "lo", "up"];

    private readonly NetfilterSelector selector = new(runner, environment.LegacyNatInUse);

    public int Print(RulesSettings settings)
    {
        var rules = settings.Rules();
        output.WriteLine("# Egress redirect rules (egress-enclave rules --apply runs these idempotently)");

        NetfilterPrograms? programs;
        if (environment.IsPrivileged)
        {
            var selection = selector.Select(settings.Netfilter, settings.NetfilterSource, NetfilterPurpose.Print, p => HoldsRules(p, rules));
            if (selection.Error is not null)
            {
                error.WriteLine($"error: {selection.Error}");
                return 1;
            }

            output.WriteLine($"# {selection.Explanation}");
            if (selection.Warning is not null)
            {
                output.WriteLine($"# {selection.Warning}");
            }

            programs = selection.Backends[0];
        }
        else if (settings.Netfilter == NetfilterBackend.Auto)
        {
            output.WriteLine("# netfilter: not probed (that needs root); shown with plain iptables/ip6tables. rules --apply uses iptables-nft where nf_tables works, else iptables-legacy");
            programs = null;
        }
        else
        {
            programs = selector.Resolve(settings.Netfilter, out var problem);
            output.WriteLine(programs is null
                ? $"# netfilter: {ConfigurationChoices.Netfilter.TextOf(settings.Netfilter)} ({settings.NetfilterSource}), but {problem}; shown with plain iptables/ip6tables"
                : $"# netfilter: {programs.Name} ({settings.NetfilterSource}; not probed, that needs root)");
        }

        output.WriteLine("# bring loopback up if it is down (an enclave may boot with lo down; --remove leaves it up)");
        output.WriteLine(string.Join(' ', ["ip", .. LoopbackUp]));
        foreach (var note in MissingFamilies(settings))
        {
            output.WriteLine($"# note: {note}");
        }

        var shown = rules.Select(r => programs?.Adapt(r) ?? r).ToList();
        foreach (var rule in shown)
        {
            output.WriteLine($"# {rule.Description}");
            output.WriteLine(rule.AddCommandLine);
        }

        output.WriteLine($"# {TcpTimestamps.Description} (only where it is {TcpTimestamps.PerConnectionOffsets}; --remove leaves it)");
        output.WriteLine(TcpTimestamps.CommandLine);
        output.WriteLine("# egress-enclave rules --remove undoes them:");
        foreach (var rule in Enumerable.Reverse(shown))
        {
            output.WriteLine(rule.RemoveCommandLine);
        }

        return 0;
    }

    public int Apply(RulesSettings settings, bool force)
    {
        if (!CanChangeRules(requireEnclaveShape: !force))
        {
            return 1;
        }

        var rules = settings.Rules();
        var selection = selector.Select(settings.Netfilter, settings.NetfilterSource, NetfilterPurpose.Apply, p => HoldsRules(p, rules));
        if (!Report(selection))
        {
            return 1;
        }

        var programs = selection.Backends[0];
        if (OtherRedirects(rules.Select(programs.Adapt).ToList()) is { Count: > 0 } others)
        {
            // Appended after them, this configuration's rules would never match what those take: the proxy: and dns:
            // lines would name where nothing is redirected.
            foreach (var (program, line) in others)
            {
                error.WriteLine($"error: nat OUTPUT ({program}) already redirects elsewhere: '{line}'; it would match before this configuration's rules");
            }

            error.WriteLine("error: nothing was changed. Remove those rules first: 'egress-enclave rules --remove --config FILE' with the configuration that applied them, or "
                + string.Join(", ", others.Select(o => $"'{o.Program} -w -t nat -D {o.Line["-A ".Length..]}'")));
            return 1;
        }

        if (!EnsureLoopbackUp())
        {
            return 1;
        }

        foreach (var note in MissingFamilies(settings))
        {
            output.WriteLine($"note: {note}");
        }

        var added = new List<RedirectRule>();
        var redirected = new HashSet<AddressFamily>();
        foreach (var rule in rules.Select(programs.Adapt))
        {
            if (rule.IsIPv6 && !environment.IPv6Enabled)
            {
                output.WriteLine($"skipped: {Label(rule)} (IPv6 is disabled here)");
                continue;
            }

            redirected.Add(rule.IsIPv6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork);
            if (IsInPlace(rule))
            {
                output.WriteLine($"present: {Label(rule)}");
                continue;
            }

            var result = runner.Run(rule.Program, rule.Add);
            if (result.ExitCode != 0)
            {
                error.WriteLine($"error: '{rule.AddCommandLine}' failed (exit {result.ExitCode}): {result.StandardError.Trim()}");
                foreach (var undo in Enumerable.Reverse(added))
                {
                    var undone = runner.Run(undo.Program, undo.Remove);
                    error.WriteLine(undone.ExitCode == 0
                        ? $"rolled back: {Label(undo)}"
                        : $"error: could not roll back '{undo.RemoveCommandLine}': {undone.StandardError.Trim()}");
                }

                return 1;
            }

            added.Add(rule);
            output.WriteLine($"added: {rule.Description}: {rule.AddCommandLine}");
        }

        SetTimestampsWithoutOffsets();
        foreach (var target in settings.ProxyTargets.Where(t => redirected.Contains(t.AddressFamily)))
        {
            var family = target.AddressFamily == AddressFamily.InterNetwork ? "IPv4" : "IPv6";
            output.WriteLine($"proxy: {target} (redirected {family} TCP goes here: the proxy must listen on it)");
        }

        foreach (var target in settings.DnsTargets.Where(t => redirected.Contains(t.AddressFamily)))
        {
            var family = target.AddressFamily == AddressFamily.InterNetwork ? "IPv4" : "IPv6";
            output.WriteLine($"dns: {target} (redirected {family} DNS, UDP and TCP, goes here: the DNS forwarder must listen on it)");
        }

        return 0;
    }

    public int Remove(RulesSettings settings)
    {
        if (!CanChangeRules(requireEnclaveShape: false))
        {
            return 1;
        }

        var rules = settings.Rules();
        var selection = selector.Select(settings.Netfilter, settings.NetfilterSource, NetfilterPurpose.Remove, p => HoldsRules(p, rules));
        if (!Report(selection))
        {
            return 1;
        }

        var failed = false;
        foreach (var rule in rules.Reverse())
        {
            if (rule.IsIPv6 && !environment.IPv6Enabled)
            {
                continue;
            }

            // A route once; a netfilter rule from every backend selected (both, in auto mode where both work).
            IEnumerable<RedirectRule> variants = rule.Program == "ip" ? [rule] : selection.Backends.Select(b => b.Adapt(rule));
            foreach (var variant in variants)
            {
                failed |= !RemoveAllCopies(variant);
            }
        }

        ReportTimestampsLeft();
        return failed ? 1 : 0;
    }

    /// <summary>
    /// The <see cref="TcpTimestamps"/> step of a remove: the setting stays (connections in TIME_WAIT may still need it),
    /// and is named only where it is in effect; a remove where no apply set it (the kernel's default, or a value someone
    /// chose) has nothing to leave.
    /// </summary>
    private void ReportTimestampsLeft()
    {
        string? value;
        try
        {
            value = environment.Sysctl.Read(TcpTimestamps.Name);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return; // the remove is done; an unreadable setting is not its concern
        }

        if (value == TcpTimestamps.WithoutOffsets)
        {
            output.WriteLine($"left: {TcpTimestamps.Description} (harmless without the rules; `sysctl -w {TcpTimestamps.Name}={TcpTimestamps.PerConnectionOffsets}` restores the kernel default)");
        }
    }

    /// <summary>
    /// The <see cref="TcpTimestamps"/> step of an apply. It never fails the apply: the redirect holds without it, and
    /// only some new connections wait. A value of 0 (timestamps off) was chosen by someone and is kept, with a warning.
    /// </summary>
    private void SetTimestampsWithoutOffsets()
    {
        try
        {
            var value = environment.Sysctl.Read(TcpTimestamps.Name);
            switch (value)
            {
                case null:
                    output.WriteLine($"skipped: {TcpTimestamps.Description} (this kernel has no {TcpTimestamps.Name})");
                    return;
                case TcpTimestamps.WithoutOffsets:
                    output.WriteLine($"present: {TcpTimestamps.Description}");
                    return;
                case TcpTimestamps.PerConnectionOffsets:
                    environment.Sysctl.Write(TcpTimestamps.Name, TcpTimestamps.WithoutOffsets);
                    output.WriteLine($"added: {TcpTimestamps.Description}: {TcpTimestamps.CommandLine} (was {value})");
                    return;
                default:
                    error.WriteLine($"warning: {TcpTimestamps.Name} is {value}, left as it is; {TcpTimestamps.Consequence}");
                    return;
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"warning: could not set {TcpTimestamps.Name}={TcpTimestamps.WithoutOffsets} ({ex.Message}); {TcpTimestamps.Consequence}");
        }
    }

    /// <summary>
    /// The DNAT rules in each family's nat OUTPUT chain (as <c>-S OUTPUT</c> prints them) whose target is none of
    /// <paramref name="rules"/>' targets in that family: left by an apply with other <c>proxy_listen</c> or
    /// <c>dns_listen</c> addresses, or by something else. A chain that cannot be listed counts as holding none.
    /// </summary>
    private List<(string Program, string Line)> OtherRedirects(IReadOnlyList<RedirectRule> rules)
    {
        var others = new List<(string Program, string Line)>();
        foreach (var family in rules.Where(r => r.Program != "ip" && (environment.IPv6Enabled || !r.IsIPv6)).GroupBy(r => r.Program))
        {
            var targets = family.Select(r => NatOutput.DnatTarget(r.Add)).OfType<string>().ToHashSet(StringComparer.Ordinal);
            if (NatOutput.Read(runner, family.Key, out _) is { } redirects)
            {
                // DNAT only, as before the start check read REDIRECT rules too: what apply refuses is unchanged.
                others.AddRange(redirects.Where(r => !r.IsRedirect && !targets.Contains(r.Target)).Select(r => (family.Key, r.Line)));
            }
        }

        return others;
    }

    private static string Label(RedirectRule rule) => rule.Program == "ip" ? rule.Description : $"{rule.Description} ({rule.Program})";

    /// <summary>
    /// Notes for address families <c>[enclave] proxy_listen</c> or <c>dns_listen</c> has no address in: they are
    /// redirected to a port where nothing listens.
    /// </summary>
    private static IEnumerable<string> MissingFamilies(RulesSettings settings)
    {
        foreach (var (family, name) in new[] { (AddressFamily.InterNetwork, "IPv4"), (AddressFamily.InterNetworkV6, "IPv6") })
        {
            if (!settings.ProxyTargets.Any(t => t.AddressFamily == family))
            {
                yield return $"{name} proxy ([enclave] proxy_listen has no {name} address: {name} TCP is redirected all the same, to a loopback port where the proxy does not listen, so it is refused and never leaves around the proxy)";
            }

            if (!settings.DnsTargets.Any(t => t.AddressFamily == family))
            {
                yield return $"{name} DNS forwarder ([enclave] dns_listen has no {name} address: {name} DNS is redirected all the same, to a loopback port where the forwarder does not listen, so it is refused and never leaves around the name policy)";
            }
        }
    }

    private bool Report(NetfilterSelection selection)
    {
        if (selection.Error is not null)
        {
            error.WriteLine($"error: {selection.Error}");
            return false;
        }

        output.WriteLine(selection.Explanation);
        if (selection.Warning is not null)
        {
            error.WriteLine(selection.Warning);
        }

        return true;
    }

    private bool HoldsRules(NetfilterPrograms programs, IReadOnlyList<RedirectRule> rules) =>
        rules.Where(r => r.Program != "ip" && (environment.IPv6Enabled || !r.IsIPv6)).Select(programs.Adapt).Any(IsInPlace);

    /// <summary>iptables allows duplicates: removes every copy, never more than a bounded number.</summary>
    private bool RemoveAllCopies(RedirectRule rule)
    {
        var removed = 0;
        while (removed < 64 && IsInPlace(rule))
        {
            var result = runner.Run(rule.Program, rule.Remove);
            if (result.ExitCode != 0)
            {
                error.WriteLine($"error: '{rule.RemoveCommandLine}' failed (exit {result.ExitCode}): {result.StandardError.Trim()}");
                return false;
            }

            removed++;
        }

        output.WriteLine(removed > 0 ? $"removed: {Label(rule)}" : $"absent: {Label(rule)}");
        return true;
    }

    /// <summary>
    /// The routes via lo cannot be added while lo is down ("Nexthop has invalid gateway"), and an enclave may boot
    /// with it down: bring it up first. Removing the rules leaves it up (other loopback users need it).
    /// </summary>
    private bool EnsureLoopbackUp()
    {
        if (runner.Run("ip", LoopbackShowUp).StandardOutput.Trim().Length > 0)
        {
            output.WriteLine("present: loopback interface up");
            return true;
        }

        var result = runner.Run("ip", LoopbackUp);
        if (result.ExitCode != 0)
        {
            error.WriteLine($"error: 'ip {string.Join(' ', LoopbackUp)}' failed (exit {result.ExitCode}): {result.StandardError.Trim()}");
            return false;
        }

        output.WriteLine($"added: loopback interface up: ip {string.Join(' ', LoopbackUp)}");
        return true;
    }

    private bool IsInPlace(RedirectRule rule)
    {
        var check = runner.Run(rule.Program, rule.Check);
        return rule.CheckPrintsMatch
            ? check.ExitCode == 0 && check.StandardOutput.Trim().Length > 0
            : check.ExitCode == 0;
    }

    private bool CanChangeRules(bool requireEnclaveShape)
    {
        if (!environment.IsPrivileged)
        {
            error.WriteLine("error: changing routes and iptables rules needs root (run as root, or with CAP_NET_ADMIN)");
            return false;
        }

        if (!runner.Exists("ip"))
        {
            error.WriteLine("error: ip not found on PATH (Debian/Ubuntu: apt-get install iproute2; Amazon Linux: yum install iproute)");
            return false;
        }

        if (requireEnclaveShape && environment.OtherInterfaces.Count > 0)
        {
            // An enclave has only the loopback interface. Routing everything via lo on a machine with real
            // interfaces would cut it off the network: refuse unless told otherwise.
            error.WriteLine($"error: this network namespace has interfaces other than lo ({string.Join(", ", environment.OtherInterfaces)}); an enclave has none. Routing all traffic via lo here would cut this machine off. Use --force if you really mean it.");
            return false;
        }

        return true;
    }
}

/// <summary>One DNAT (or REDIRECT) rule of a nat OUTPUT chain: its line as <c>-S OUTPUT</c> prints it, its
/// <c>--to-destination</c> (empty for a DNAT without one; for a REDIRECT, loopback at its <c>--to-ports</c>, where the
/// kernel sends a local packet it redirects), whether it takes DNS (<c>--dport 53</c>) rather than other traffic, and
/// whether it is a REDIRECT (never written by <c>rules</c>; a hand-written one).</summary>
internal sealed record NatRedirect(string Line, string Target, bool IsDns, bool IsRedirect = false);

/// <summary>
/// Reads the DNAT rules of one family's nat OUTPUT chain with <c>PROGRAM -w -t nat -S OUTPUT</c>: what <c>rules
/// --apply</c> compares with the targets it would add, and what egress-enclave compares with its listen addresses at
/// start (<see cref="LiveRulesCheck"/>).
/// </summary>
internal static class NatOutput
{
    /// <summary>The arguments that list nat OUTPUT; the same as the netfilter probe's, so one run can serve both.</summary>
    public static readonly IReadOnlyList<string> ListArguments = ["-w", "-t", "nat", "-S", "OUTPUT"];

    /// <summary>The DNAT rules of <paramref name="program"/>'s nat OUTPUT chain, in order; null (with
    /// <paramref name="failure"/> saying why) when the chain cannot be listed.</summary>
    public static List<NatRedirect>? Read(ICommandRunner runner, string program, out string failure)
    {
        var listed = runner.Run(program, ListArguments);
        var said = (listed.StandardError + "\n" + listed.StandardOutput).Trim();
        if (listed.ExitCode != 0 || said.Contains("Failed to initialize nft", StringComparison.Ordinal))
        {
            var why = said.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? string.Empty;
            failure = $"'{program} {string.Join(' ', ListArguments)}' failed (exit {listed.ExitCode}){(why.Length > 0 ? ": " + why : string.Empty)}";
            return null;
        }

        failure = string.Empty;
        var redirects = new List<NatRedirect>();
        foreach (var line in listed.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (words is ["-A", "OUTPUT", ..] && DnatTarget(words) is { } target)
            {
                redirects.Add(new NatRedirect(line, target, IsDns(words)));
            }
            else if (words is ["-A", "OUTPUT", ..] && RedirectPort(words) is { } port)
            {
                // A review: a hand-written "-j REDIRECT --to-ports 4444" was read as no redirect at all.
                bool ipv6 = program.StartsWith("ip6tables", StringComparison.Ordinal);
                redirects.Add(new NatRedirect(line, ipv6 ? $"[::1]:{port}" : $"127.0.0.1:{port}", IsDns(words), IsRedirect: true));
            }
        }

        return redirects;
    }

    /// <summary>The value of <c>--to-destination</c> in a DNAT rule's words; null for another rule.</summary>
    public static string? DnatTarget(IReadOnlyList<string> words)
    {
        for (int i = 0; i + 1 < words.Count; i++)
        {
            if (words[i] == "-j" && words[i + 1] == "DNAT")
            {
                for (int j = i + 2; j + 1 < words.Count; j++)
                {
                    if (words[j] == "--to-destination")
                    {
                        return words[j + 1];
                    }
                }

                return string.Empty; // a DNAT without a target of its own: never one of this configuration's
            }
        }

        return null;
    }

    /// <summary>The single port of a REDIRECT rule's <c>--to-ports</c> (<c>-j REDIRECT --to-ports 4444</c>); null for
    /// another rule, or a range.</summary>
    public static string? RedirectPort(IReadOnlyList<string> words)
    {
        for (int i = 0; i + 1 < words.Count; i++)
        {
            if (words[i] == "-j" && words[i + 1] == "REDIRECT")
            {
                for (int j = i + 2; j + 1 < words.Count; j++)
                {
                    if (words[j] == "--to-ports" && ushort.TryParse(words[j + 1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out ushort port))
                    {
                        return port.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    }
                }

                return null;
            }
        }

        return null;
    }

    /// <summary>Whether a rule's words match destination port 53 (the DNS redirects).</summary>
    public static bool IsDns(IReadOnlyList<string> words)
    {
        for (int i = 0; i + 1 < words.Count; i++)
        {
            if (words[i] == "--dport" && words[i + 1] == "53")
            {
                return true;
            }
        }

        return false;
    }
}
