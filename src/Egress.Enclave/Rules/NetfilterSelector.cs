using Egress.Configuration;

namespace Egress.Enclave.Rules;

/// <summary>The programs that reach one netfilter backend, e.g. <c>iptables-legacy</c> and <c>ip6tables-legacy</c>.</summary>
internal sealed record NetfilterPrograms(NetfilterBackend Backend, string IPv4, string IPv6)
{
    public string Name => ConfigurationChoices.Netfilter.TextOf(Backend);

    /// <summary>The rule with its <c>iptables</c>/<c>ip6tables</c> replaced by this backend's program; routes stay as they are.</summary>
    public RedirectRule Adapt(RedirectRule rule) => rule.Program switch
    {
        "iptables" => rule with { Program = IPv4 },
        "ip6tables" => rule with { Program = IPv6 },
        _ => rule,
    };
}

/// <summary>What probing one backend found: its programs (null when none were found) and whether they work.</summary>
internal sealed record NetfilterProbe(NetfilterBackend Backend, NetfilterPrograms? Programs, bool Works, string Finding);

/// <summary>What the backends are chosen for: printing the rules (which must change nothing), applying or removing them.</summary>
internal enum NetfilterPurpose
{
    Print,
    Apply,
    Remove,
}

/// <summary>
/// The backends to use: one to apply to (or print), every working one to remove from (none where legacy is named and
/// no legacy nat table is in use: no rules are there). <see cref="Error"/> is set (and <see cref="Backends"/> empty)
/// when none can be used; <see cref="Explanation"/> says which and why, for the
/// <c>netfilter: ...</c> line.
/// </summary>
internal sealed record NetfilterSelection(IReadOnlyList<NetfilterPrograms> Backends, string Explanation, string? Warning, string? Error);

/// <summary>
/// Picks the netfilter backend the redirect rules go into. The Nitro enclave kernel has no nf_tables, so Debian's
/// default <c>iptables</c> (iptables-nft) fails there with "Failed to initialize nft: Protocol not supported"; only
/// the legacy ip_tables interface (iptables-legacy) works. A backend is found as <c>iptables-nft</c> /
/// <c>iptables-legacy</c>, or, where those names do not exist, as a plain <c>iptables</c> whose <c>-V</c> names that
/// backend; it works when <c>-w -t nat -S OUTPUT</c> succeeds. Auto prefers nf_tables unless the Egress rules are
/// already in the legacy tables only. Where nf_tables works, the legacy tables are probed only if a legacy nat table
/// is in use (<paramref name="legacyNatInUse"/>): the kernel creates a namespace's legacy table on first use, and once
/// it exists iptables-nft warns about it on every call, so auto never creates one it does not need. Nor does legacy,
/// when named, except to apply: printing finds its programs without probing, and removing finds no rules there.
/// </summary>
internal sealed class NetfilterSelector(ICommandRunner runner, Func<bool> legacyNatInUse)
{
    private static readonly string[] ProbeArguments = ["-w", "-t", "nat", "-S", "OUTPUT"];
    private static readonly string[] VersionArguments = ["-V"];

    /// <summary>The programs of <paramref name="backend"/> (nft or legacy), found without running anything that needs root.</summary>
    public NetfilterPrograms? Resolve(NetfilterBackend backend, out string problem)
    {
        var suffix = "-" + ConfigurationChoices.Netfilter.TextOf(backend);
        if (runner.Exists("iptables" + suffix))
        {
            problem = string.Empty;
            return new NetfilterPrograms(backend, "iptables" + suffix, "ip6tables" + suffix);
        }

        if (!runner.Exists("iptables"))
        {
            problem = $"neither iptables{suffix} nor iptables found (Debian/Ubuntu: apt-get install iptables; Amazon Linux: yum install iptables)";
            return null;
        }

        // Before iptables 1.8 there was only the legacy backend, and -V printed no backend at all.
        var version = runner.Run("iptables", VersionArguments);
        var text = FirstLine(version.StandardOutput + "\n" + version.StandardError);
        var plain = text.Contains("nf_tables", StringComparison.Ordinal) ? NetfilterBackend.Nft : NetfilterBackend.Legacy;
        if (version.ExitCode == 0 && plain == backend)
        {
            problem = string.Empty;
            return new NetfilterPrograms(backend, "iptables", "ip6tables");
        }

        problem = version.ExitCode == 0
            ? $"no iptables{suffix}, and iptables is the {ConfigurationChoices.Netfilter.TextOf(plain)} variant ({text})"
            : $"no iptables{suffix}, and 'iptables -V' failed (exit {version.ExitCode}): {text}";
        return null;
    }

    /// <summary>Finds <paramref name="backend"/>'s programs and runs <c>-w -t nat -S OUTPUT</c> with the IPv4 one.</summary>
    public NetfilterProbe Probe(NetfilterBackend backend)
    {
        var programs = Resolve(backend, out var problem);
        if (programs is null)
        {
            return new NetfilterProbe(backend, null, false, problem);
        }

        var result = runner.Run(programs.IPv4, ProbeArguments);
        var said = result.StandardError + "\n" + result.StandardOutput;

        // iptables-nft without nf_tables says "Failed to initialize nft"; never trust its exit code alone.
        var works = result.ExitCode == 0 && !said.Contains("Failed to initialize nft", StringComparison.Ordinal);
        if (works)
        {
            return new NetfilterProbe(backend, programs, true, $"{programs.IPv4} works");
        }

        var why = FirstLine(said);
        return new NetfilterProbe(backend, programs, false, $"{programs.IPv4} failed: {(why.Length > 0 ? why : $"exit {result.ExitCode}")}");
    }

    /// <summary>Finds <paramref name="backend"/>'s programs, taken to work without the probe (the rules are only printed).</summary>
    private NetfilterProbe Unprobed(NetfilterBackend backend)
    {
        var programs = Resolve(backend, out var problem);
        return programs is null
            ? new NetfilterProbe(backend, null, false, problem)
            : new NetfilterProbe(backend, programs, true, "not probed, that would create the legacy nat table");
    }

    /// <summary>
    /// Chooses the backend(s). <paramref name="holdsRules"/> tells whether a working backend already has any of the
    /// Egress rules; <paramref name="source"/> names where an explicit setting came from (for the explanation).
    /// </summary>
    public NetfilterSelection Select(NetfilterBackend setting, string source, NetfilterPurpose purpose, Func<NetfilterPrograms, bool> holdsRules)
    {
        if (setting != NetfilterBackend.Auto)
        {
            // Probing legacy where no legacy nat table is in use would create one: only an apply needs it.
            var unprobed = setting == NetfilterBackend.Legacy && purpose != NetfilterPurpose.Apply && !legacyNatInUse();
            if (unprobed && purpose == NetfilterPurpose.Remove)
            {
                return new NetfilterSelection([], $"netfilter: legacy ({source}; no legacy nat table is in use, so no rules are there)", null, null);
            }

            var only = unprobed ? Unprobed(setting) : Probe(setting);
            if (!only.Works)
            {
                var advice = setting == NetfilterBackend.Nft
                    ? "This kernel may lack nf_tables (the Nitro enclave kernel does): set [enclave] netfilter = \"legacy\" or \"auto\", or pass --netfilter legacy"
                    : "This kernel may lack the legacy ip_tables NAT table (iptable_nat), or iptables-legacy is not installed (Debian: apt-get install iptables): set [enclave] netfilter = \"nft\" or \"auto\", or pass --netfilter nft";
                return new NetfilterSelection([], string.Empty, null, $"netfilter {ConfigurationChoices.Netfilter.TextOf(setting)} ({source}) does not work here: {only.Finding}. {advice}.");
            }

            return new NetfilterSelection(
                [only.Programs!], $"netfilter: {ConfigurationChoices.Netfilter.TextOf(setting)} ({source}; {only.Finding})", OtherBackendHolds(setting, purpose, holdsRules), null);
        }

        var nft = Probe(NetfilterBackend.Nft);
        if (nft.Works && !legacyNatInUse())
        {
            return new NetfilterSelection(
                [nft.Programs!],
                $"netfilter: nft ({nft.Finding}; no legacy nat table is in use, so no rules are there)",
                null,
                null);
        }

        var legacy = Probe(NetfilterBackend.Legacy);
        if (!nft.Works && !legacy.Works)
        {
            return new NetfilterSelection(
                [],
                string.Empty,
                null,
                $"no netfilter backend works here: {nft.Finding}; {legacy.Finding}. The redirect rules need the kernel's nf_tables or its legacy ip_tables NAT table (iptable_nat), and iptables installed (Debian/Ubuntu: apt-get install iptables).");
        }

        if (!nft.Works)
        {
            return new NetfilterSelection([legacy.Programs!], $"netfilter: legacy ({nft.Finding})", null, null);
        }

        if (!legacy.Works)
        {
            return new NetfilterSelection([nft.Programs!], $"netfilter: nft ({nft.Finding}; legacy: {legacy.Finding})", null, null);
        }

        if (purpose == NetfilterPurpose.Remove)
        {
            return new NetfilterSelection([nft.Programs!, legacy.Programs!], "netfilter: nft and legacy (both work; removing from both)", null, null);
        }

        var inLegacy = holdsRules(legacy.Programs!);
        if (inLegacy && !holdsRules(nft.Programs!))
        {
            return new NetfilterSelection(
                [legacy.Programs!],
                "netfilter: legacy (both work, but the Egress rules are already in the iptables-legacy tables; to move them to nf_tables: rules --remove, then rules --apply)",
                null,
                null);
        }

        var warning = inLegacy
            ? "warning: the Egress rules are in both the nf_tables and the iptables-legacy tables, and both apply; rules --remove removes them from both"
            : null;
        return new NetfilterSelection([nft.Programs!], $"netfilter: nft (both work; auto prefers nf_tables: {nft.Finding})", warning, null);
    }

    /// <summary>
    /// A warning when an explicit nft finds Egress rules in the legacy tables too (a field trial: an explicit nft apply
    /// beside rules in the legacy tables added a second set without a word, and an explicit nft remove left the legacy
    /// set in place). Looked at only where a legacy nat table is in use (a probe would create one); an explicit legacy
    /// never touches nft.
    /// </summary>
    private string? OtherBackendHolds(NetfilterBackend chosen, NetfilterPurpose purpose, Func<NetfilterPrograms, bool> holdsRules)
    {
        const NetfilterBackend other = NetfilterBackend.Legacy;
        if (chosen != NetfilterBackend.Nft || !legacyNatInUse())
        {
            return null;
        }

        var probe = Probe(other);
        if (!probe.Works || !holdsRules(probe.Programs!))
        {
            return null;
        }

        const string tables = "the iptables-legacy tables";
        string name = ConfigurationChoices.Netfilter.TextOf(other);
        return purpose == NetfilterPurpose.Remove
            ? $"warning: the Egress rules are also in {tables}, and still apply there: rules --remove --netfilter {name} removes them (rules --remove with auto removes from both)"
            : $"warning: the Egress rules are also in {tables}, and apply there too: rules --remove --netfilter {name} removes them";
    }

    /// <summary>
    /// Whether this network namespace has a legacy (ip_tables) nat table, IPv4 or IPv6: the kernel lists the legacy
    /// tables in use in /proc/net/ip_tables_names and ip6_tables_names (absent while the module is not loaded). If
    /// they cannot be read, assume it does, and probe.
    /// </summary>
    public static bool ReadLegacyNatInUse()
    {
        try
        {
            return new[] { "/proc/net/ip_tables_names", "/proc/net/ip6_tables_names" }
                .Any(path => File.Exists(path) && File.ReadLines(path).Any(line => line.Trim() == "nat"));
        }
        catch (IOException)
        {
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return true;
        }
    }

    private static string FirstLine(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .FirstOrDefault(line => !line.StartsWith('#')) ?? string.Empty;
}
