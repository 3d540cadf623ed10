using System.Collections.Frozen;
using System.Net;

namespace Egress.Policy;

/// <summary>
/// The allowlist: decides DNS questions by name and connections by address. An address is allowed when an address or
/// network entry covers it (even inside an internal range); otherwise internal ranges are denied, even with <c>*</c>
/// or when a name resolved to them; then <c>*</c> allows; then the <see cref="AllowlistCache"/> decides (only when
/// the list holds a name entry, so a list without names ignores whatever the cache holds). Enabled with no entries
/// denies everything. Checks do not allocate.
/// </summary>
public sealed class EgressPolicy
{
    private readonly FrozenDictionary<string, string>.AlternateLookup<ReadOnlySpan<char>> _hosts;
    private readonly FrozenDictionary<string, string>.AlternateLookup<ReadOnlySpan<char>> _wildcardDomains;
    private readonly FrozenDictionary<UInt128, string> _addresses;
    private readonly (AddressBlock Block, string Text)[] _networks;
    private readonly bool _allowAll;
    private readonly bool _hasNameEntries;
    private readonly AllowlistCache _cache;

    private EgressPolicy(bool enabled, DestinationRule[] destinations, AllowlistCache cache)
    {
        IsEnabled = enabled;
        Destinations = destinations;
        _cache = cache;
        var hosts = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var wildcardDomains = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var addresses = new Dictionary<UInt128, string>();
        var networks = new List<(AddressBlock Block, string Text)>();
        foreach (DestinationRule rule in destinations)
        {
            switch (rule.Kind)
            {
                case DestinationRuleKind.ExactHost:
                    hosts.TryAdd(rule.HostName!, rule.Text);
                    break;
                case DestinationRuleKind.WildcardSubdomain:
                    wildcardDomains.TryAdd(rule.HostName!, rule.Text);
                    break;
                case DestinationRuleKind.AllowAll:
                    _allowAll = true;
                    break;
                case DestinationRuleKind.Address:
                    addresses.TryAdd(AddressValue.Of(rule.Address!), rule.Text);
                    break;
                default:
                    networks.Add((AddressBlock.From(rule.Network!.Value), rule.Text));
                    break;
            }
        }

        _hosts = hosts.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase).GetAlternateLookup<ReadOnlySpan<char>>();
        _wildcardDomains = wildcardDomains.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase).GetAlternateLookup<ReadOnlySpan<char>>();
        _addresses = addresses.ToFrozenDictionary();
        _networks = [.. networks.OrderByDescending(network => network.Block.PrefixLength)];
        _hasNameEntries = _allowAll || hosts.Count > 0 || wildcardDomains.Count > 0;
    }

    /// <summary>Whether egress is enabled; when not, everything is denied.</summary>
    public bool IsEnabled { get; }

    /// <summary>The parsed destination entries, in configuration order.</summary>
    public IReadOnlyList<DestinationRule> Destinations { get; }

    /// <summary>Builds a policy from the configured destination entries.</summary>
    /// <param name="enabled">Whether egress is enabled.</param>
    /// <param name="destinations">The entries, e.g. <c>api.example.com</c>, <c>*.example.com</c>, <c>10.0.0.5</c>.</param>
    /// <param name="cache">The addresses learned from DNS answers.</param>
    /// <returns>The policy.</returns>
    /// <exception cref="ArgumentException">One or more entries are invalid; the message names every one, one per line, with its reason.</exception>
    public static EgressPolicy Create(bool enabled, IEnumerable<string> destinations, AllowlistCache cache)
    {
        ArgumentNullException.ThrowIfNull(destinations);
        ArgumentNullException.ThrowIfNull(cache);
        var rules = new List<DestinationRule>();
        var errors = new List<string>();
        foreach (string entry in destinations)
        {
            if (DestinationRule.TryParse(entry, out DestinationRule? rule, out string? error))
            {
                rules.Add(rule);
            }
            else
            {
                errors.Add(error);
            }
        }

        return errors.Count > 0 ? throw new ArgumentException(string.Join(Environment.NewLine, errors), nameof(destinations)) : new EgressPolicy(enabled, [.. rules], cache);
    }

    /// <summary>Builds a policy from destination entries already parsed (with their locations) by the configuration reader.</summary>
    internal static EgressPolicy FromRules(bool enabled, DestinationRule[] rules, AllowlistCache cache) => new(enabled, rules, cache);

    /// <summary>Decides a connection to <paramref name="address"/>.</summary>
    /// <param name="address">The original destination address.</param>
    /// <returns>The decision and its reason.</returns>
    public PolicyDecision CheckAddress(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        return CheckStatic(address) ?? FromCache(_hasNameEntries ? _cache.Lookup(address) : default);
    }

    /// <summary>
    /// Decides a connection to <paramref name="address"/> that is about to be opened: when it is allowed through a
    /// learned address, the address is held live for the connection's lifetime (see <see cref="AllowlistCache.Hold"/>).
    /// </summary>
    /// <param name="address">The original destination address.</param>
    /// <param name="hold">Release (dispose) when the connection ends; null when nothing is held.</param>
    /// <returns>The decision and its reason.</returns>
    internal PolicyDecision CheckConnection(IPAddress address, out AddressHold? hold)
    {
        ArgumentNullException.ThrowIfNull(address);
        hold = null;
        return CheckStatic(address) ?? FromCache(_hasNameEntries ? _cache.Hold(address, out hold) : default);
    }

    /// <summary>Whether an entry names exactly <paramref name="address"/>: an address entry, or a network entry of a
    /// single address (<c>/32</c>, <c>/128</c>). A wider network that merely covers it does not count.</summary>
    internal bool NamesExactly(IPAddress address)
    {
        UInt128 value = AddressValue.Of(address);
        if (_addresses.ContainsKey(value))
        {
            return true;
        }

        foreach (var (block, _) in _networks)
        {
            if (block.PrefixLength == 128 && block.Contains(value))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// The other addresses learned from <paramref name="name"/> that a connection refused at <paramref name="failed"/>
    /// may fall over to (see <see cref="AllowlistCache.OtherAddressesOf"/>); each must still pass
    /// <see cref="CheckConnection"/>. Empty when the list holds no name entry.
    /// </summary>
    internal List<IPAddress> OtherAddressesOf(string name, IPAddress failed, int max) =>
        _hasNameEntries ? _cache.OtherAddressesOf(name, failed, max) : [];

    /// <summary>The decision made without the cache (disabled, static entry, internal range, <c>*</c>); null when the
    /// cache decides.</summary>
    private PolicyDecision? CheckStatic(IPAddress address)
    {
        if (!IsEnabled)
        {
            return new PolicyDecision(false, DecisionReason.EgressDisabled);
        }

        UInt128 value = AddressValue.Of(address);
        if (TryFindStaticEntry(value, out string? entry))
        {
            return new PolicyDecision(true, DecisionReason.StaticEntry, entry);
        }

        if (InternalRanges.TryClassify(value, out string? rangeName))
        {
            return new PolicyDecision(false, DecisionReason.InternalRange, rangeName);
        }

        return _allowAll ? new PolicyDecision(true, DecisionReason.AllowAll, "*") : null;
    }

    private static PolicyDecision FromCache(CacheLookup lookup) => lookup.State switch
    {
        CacheState.Live when lookup.InUse => new PolicyDecision(true, DecisionReason.LearnedInUse, lookup.Name, connections: lookup.Connections),
        CacheState.Live when lookup.InGrace => new PolicyDecision(true, DecisionReason.LearnedInGrace, lookup.Name, lookup.Time),
        CacheState.Live => new PolicyDecision(true, DecisionReason.Learned, lookup.Name, lookup.Time),
        CacheState.Expired => new PolicyDecision(false, DecisionReason.LearnedExpired, lookup.Name, lookup.Time),
        _ => new PolicyDecision(false, DecisionReason.NeverLearned),
    };

    /// <summary>Decides a DNS question for <paramref name="hostName"/> (any case, trailing dot ignored).</summary>
    /// <param name="hostName">The question name.</param>
    /// <returns>The decision; when allowed, <see cref="PolicyDecision.Subject"/> is the entry that matched.</returns>
    public PolicyDecision CheckName(string hostName)
    {
        ArgumentNullException.ThrowIfNull(hostName);
        return CheckName(hostName.AsSpan());
    }

    /// <summary>Decides a DNS question for <paramref name="hostName"/> (any case, trailing dot ignored).</summary>
    /// <param name="hostName">The question name.</param>
    /// <returns>The decision; when allowed, <see cref="PolicyDecision.Subject"/> is the entry that matched.</returns>
    public PolicyDecision CheckName(ReadOnlySpan<char> hostName)
    {
        if (!IsEnabled)
        {
            return new PolicyDecision(false, DecisionReason.EgressDisabled);
        }

        if (hostName.EndsWith('.'))
        {
            hostName = hostName[..^1];
        }

        if (hostName.IsEmpty)
        {
            return new PolicyDecision(false, DecisionReason.NameNotAllowed);
        }

        if (_hosts.TryGetValue(hostName, out string? entry))
        {
            return new PolicyDecision(true, DecisionReason.NameEntry, entry);
        }

        // Longest domain first, so the most specific wildcard is reported; the apex itself never matches.
        for (int dot = hostName.IndexOf('.'); dot >= 0; dot = NextDot(hostName, dot))
        {
            if (dot > 0 && _wildcardDomains.TryGetValue(hostName[(dot + 1)..], out entry))
            {
                return new PolicyDecision(true, DecisionReason.NameEntry, entry);
            }
        }

        return _allowAll
            ? new PolicyDecision(true, DecisionReason.AllowAll, "*")
            : new PolicyDecision(false, DecisionReason.NameNotAllowed);
    }

    /// <summary>
    /// Learns that <paramref name="name"/> (the question asked) resolved to <paramref name="address"/>, unless egress
    /// is disabled, the name is not allowed, or the address is internal and no address or network entry covers it
    /// (DNS rebinding protection).
    /// </summary>
    /// <param name="name">The question name that was allowed (not a CNAME target).</param>
    /// <param name="address">An A or AAAA address from the answer.</param>
    /// <param name="ttl">The record's TTL.</param>
    /// <returns>Whether the address was learned, and why not.</returns>
    public LearnResult Learn(string name, IPAddress address, TimeSpan ttl)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(address);
        PolicyDecision nameDecision = CheckName(name);
        if (!nameDecision.IsAllowed)
        {
            return new LearnResult(IsEnabled ? LearnOutcome.NameNotAllowed : LearnOutcome.EgressDisabled);
        }

        UInt128 value = AddressValue.Of(address);
        if (!TryFindStaticEntry(value, out _) && InternalRanges.TryClassify(value, out string? rangeName))
        {
            return new LearnResult(LearnOutcome.InternalRange, rangeName);
        }

        _cache.Learn(name, address, ttl);
        return new LearnResult(LearnOutcome.Learned);
    }

    private static int NextDot(ReadOnlySpan<char> name, int dot)
    {
        int next = name[(dot + 1)..].IndexOf('.');
        return next < 0 ? -1 : dot + 1 + next;
    }

    private bool TryFindStaticEntry(UInt128 value, out string? entry)
    {
        if (_addresses.TryGetValue(value, out entry))
        {
            return true;
        }

        foreach (var (block, text) in _networks)
        {
            if (block.Contains(value))
            {
                entry = text;
                return true;
            }
        }

        entry = null;
        return false;
    }
}
