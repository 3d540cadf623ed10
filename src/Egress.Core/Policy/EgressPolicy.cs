using System.Collections.Frozen;
using System.Diagnostics.CodeAnalysis;
using System.Net;
using Egress.Tls;

namespace Egress.Policy;

/// <summary>
/// The allowlist: decides DNS questions by name and connections by address. An address is allowed when an address or
/// network entry covers it (even inside an internal range); otherwise internal ranges are denied, even with <c>*</c>
/// or when a name resolved to them; then <c>*</c> allows; then the <see cref="AllowlistCache"/> decides (only when
/// the list holds a name entry, so a list without names ignores whatever the cache holds). Enabled with no entries
/// denies everything. Checks do not allocate. In <see cref="EgressMode.Report"/> a denial is turned into an allowed
/// decision with <see cref="PolicyDecision.WouldDeny"/> (internal ranges and the parent's own addresses stay denied),
/// and names the list does not allow are learned too.
/// </summary>
public sealed class EgressPolicy
{
    private readonly FrozenDictionary<string, DestinationRule[]>.AlternateLookup<ReadOnlySpan<char>> _hosts;
    private readonly FrozenDictionary<string, DestinationRule[]>.AlternateLookup<ReadOnlySpan<char>> _wildcardDomains;
    private readonly FrozenDictionary<UInt128, DestinationRule[]> _addresses;
    private readonly (AddressBlock Block, DestinationRule Rule)[] _networks;
    private readonly DestinationRule[] _allowAll;
    private readonly bool _hasNameEntries;

    /// <summary>Whether connection checks consult the cache: when the list holds a name entry, and in report mode
    /// (which learns every answered name, to report it).</summary>
    private readonly bool _consultCache;
    private readonly bool _hasPorts;
    private readonly AllowlistCache _cache;
    private readonly (AddressBlock Block, string Name)[] _internalNetworks;

    private EgressPolicy(bool enabled, DestinationRule[] destinations, AllowlistCache cache, EgressMode mode, TlsServerNameMode tlsServerName = TlsServerNameMode.Require,
        IReadOnlyList<IPNetwork>? internalNetworks = null)
    {
        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "not an EgressMode: Enforce or Report");
        }

        if (!Enum.IsDefined(tlsServerName))
        {
            throw new ArgumentOutOfRangeException(nameof(tlsServerName), tlsServerName, "not a TlsServerNameMode");
        }

        Mode = mode;
        IsEnabled = enabled;
        TlsServerName = tlsServerName;
        Destinations = destinations;
        _cache = cache;
        InternalNetworks = internalNetworks ?? [];
        _internalNetworks = [.. InternalNetworks.Select(network => (AddressBlock.From(network), InternalRanges.ConfiguredName(network)))];
        var hosts = new Dictionary<string, List<DestinationRule>>(StringComparer.OrdinalIgnoreCase);
        var wildcardDomains = new Dictionary<string, List<DestinationRule>>(StringComparer.OrdinalIgnoreCase);
        var addresses = new Dictionary<UInt128, List<DestinationRule>>();
        var networks = new List<(AddressBlock Block, DestinationRule Rule)>();
        var allowAll = new List<DestinationRule>();
        foreach (DestinationRule rule in destinations)
        {
            _hasPorts |= rule.Ports is not null;
            switch (rule.Kind)
            {
                case DestinationRuleKind.ExactHost:
                    Add(hosts, rule.HostName!, rule);
                    break;
                case DestinationRuleKind.WildcardSubdomain:
                    Add(wildcardDomains, rule.HostName!, rule);
                    break;
                case DestinationRuleKind.AllowAll:
                    allowAll.Add(rule);
                    break;
                case DestinationRuleKind.Address:
                    Add(addresses, AddressValue.Of(rule.Address!), rule);
                    break;
                default:
                    networks.Add((AddressBlock.From(rule.Network!.Value), rule));
                    break;
            }
        }

        _hosts = hosts.ToFrozenDictionary(pair => pair.Key, pair => pair.Value.ToArray(), StringComparer.OrdinalIgnoreCase).GetAlternateLookup<ReadOnlySpan<char>>();
        _wildcardDomains = wildcardDomains.ToFrozenDictionary(pair => pair.Key, pair => pair.Value.ToArray(), StringComparer.OrdinalIgnoreCase).GetAlternateLookup<ReadOnlySpan<char>>();
        _addresses = addresses.ToFrozenDictionary(pair => pair.Key, pair => pair.Value.ToArray());
        _networks = [.. networks.OrderByDescending(network => network.Block.PrefixLength)];
        _allowAll = [.. allowAll];
        _hasNameEntries = _allowAll.Length > 0 || hosts.Count > 0 || wildcardDomains.Count > 0;
        _consultCache = _hasNameEntries || mode == EgressMode.Report;
    }

    private static void Add<TKey>(Dictionary<TKey, List<DestinationRule>> rules, TKey key, DestinationRule rule)
        where TKey : notnull
    {
        if (!rules.TryGetValue(key, out List<DestinationRule>? list))
        {
            rules[key] = list = [];
        }

        list.Add(rule);
    }

    /// <summary>Whether egress is enabled; when not, everything is denied.</summary>
    public bool IsEnabled { get; }

    /// <summary>Whether a TLS connection to a DNS-learned address must name one of the names the address was learned from
    /// (<c>egress.tls_server_name</c>, default <see cref="TlsServerNameMode.Require"/>); see <see cref="TlsServerNameMode"/>.</summary>
    public TlsServerNameMode TlsServerName { get; }

    /// <summary>The networks internal besides the built-in ranges (<c>host.internal_networks</c>); empty by default.</summary>
    internal IReadOnlyList<IPNetwork> InternalNetworks { get; }

    /// <summary>The cache of addresses learned from DNS answers this policy consults (its metrics observe it).</summary>
    internal AllowlistCache Cache => _cache;

    /// <summary>Whether denials are enforced or only reported (<c>egress.mode</c>).</summary>
    public EgressMode Mode { get; }

    /// <summary>The parsed destination entries, in configuration order.</summary>
    public IReadOnlyList<DestinationRule> Destinations { get; }

    /// <summary>Builds a policy from destination entries. For the policy of an <c>enclave.toml</c> use
    /// <see cref="Configuration.ConfiguredComponents.CreatePolicy"/> instead: it applies <c>egress.ports</c>, which the
    /// entries of <see cref="Configuration.EgressSection.Destinations"/> do not carry.</summary>
    /// <param name="enabled">Whether egress is enabled.</param>
    /// <param name="destinations">The entries, e.g. <c>api.example.com</c>, <c>*.example.com</c>, <c>10.0.0.5</c>.</param>
    /// <param name="cache">The addresses learned from DNS answers; give each policy its own, as the hosts do. A shared
    /// cache still allows an address only through a name this policy's own entries allow, but how long the address
    /// stays allowed is then the address's (its latest learning under any name), not this policy's, and other names
    /// can push this policy's out of the few kept per address.</param>
    /// <returns>The policy.</returns>
    /// <exception cref="ArgumentException">One or more entries are invalid; the message names every one, one per line, with its reason.</exception>
    public static EgressPolicy Create(bool enabled, IEnumerable<string> destinations, AllowlistCache cache) =>
        Create(enabled, destinations, cache, EgressMode.Enforce);

    /// <summary>Builds a policy from the configured destination entries, enforcing or reporting its denials.</summary>
    /// <param name="enabled">Whether egress is enabled.</param>
    /// <param name="destinations">The entries, e.g. <c>api.example.com</c>, <c>*.example.com</c>, <c>10.0.0.5</c>.</param>
    /// <param name="cache">The addresses learned from DNS answers; give each policy its own, as the hosts do. A shared
    /// cache still allows an address only through a name this policy's own entries allow, but how long the address
    /// stays allowed is then the address's (its latest learning under any name), not this policy's, and other names
    /// can push this policy's out of the few kept per address.</param>
    /// <param name="mode">Whether denials are enforced or only reported (<c>egress.mode</c>).</param>
    /// <returns>The policy.</returns>
    /// <exception cref="ArgumentException">One or more entries are invalid; the message names every one, one per line, with its reason.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="mode"/> is not one of its named values.</exception>
    public static EgressPolicy Create(bool enabled, IEnumerable<string> destinations, AllowlistCache cache, EgressMode mode)
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

        return errors.Count > 0 ? throw new ArgumentException(string.Join(Environment.NewLine, errors), nameof(destinations)) : new EgressPolicy(enabled, [.. rules], cache, mode);
    }

    /// <summary>Builds a policy from the configured destination entries, with a TLS server-name mode, enforcing or
    /// reporting its denials.</summary>
    /// <param name="enabled">Whether egress is enabled.</param>
    /// <param name="destinations">The entries, e.g. <c>api.example.com</c>, <c>*.example.com</c>, <c>10.0.0.5</c>.</param>
    /// <param name="cache">The addresses learned from DNS answers; give each policy its own, as the hosts do. A shared
    /// cache still allows an address only through a name this policy's own entries allow, but how long the address
    /// stays allowed is then the address's (its latest learning under any name), not this policy's, and other names
    /// can push this policy's out of the few kept per address.</param>
    /// <param name="tlsServerName">The server-name check of connections to learned addresses (<c>egress.tls_server_name</c>).</param>
    /// <param name="mode">Whether denials are enforced (the default) or only reported (<c>egress.mode</c>).</param>
    /// <returns>The policy.</returns>
    /// <exception cref="ArgumentException">One or more entries are invalid; the message names every one, one per line, with its reason.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tlsServerName"/> or <paramref name="mode"/> is not one of its named values.</exception>
    public static EgressPolicy Create(bool enabled, IEnumerable<string> destinations, AllowlistCache cache, TlsServerNameMode tlsServerName, EgressMode mode = EgressMode.Enforce)
    {
        var policy = Create(enabled, destinations, cache, mode);
        return new EgressPolicy(enabled, [.. policy.Destinations], cache, mode, tlsServerName);
    }

    /// <summary>Builds a policy from destination entries already parsed (with their locations) by the configuration reader,
    /// with networks internal as the built-in ranges are (<c>host.internal_networks</c>).</summary>
    internal static EgressPolicy FromRules(bool enabled, DestinationRule[] rules, AllowlistCache cache, EgressMode mode = EgressMode.Enforce, TlsServerNameMode tlsServerName = TlsServerNameMode.Require,
        IReadOnlyList<IPNetwork>? internalNetworks = null) =>
        new(enabled, rules, cache, mode, tlsServerName, internalNetworks);

    /// <summary>The names <paramref name="address"/> was learned from that count now (live by their own learning, or held
    /// by an open connection through them: <see cref="AllowlistCache.Counts"/>), and <paramref name="decided"/> (the name
    /// a decision named) if it is not among them.</summary>
    internal IReadOnlyList<string> LearnedNamesOf(IPAddress address, string? decided)
    {
        var names = new List<string>();
        AddressUse? use = _cache.UseOf(address);
        foreach (LearnedName learned in _cache.NamesOf(address))
        {
            LearnedName name = learned;
            if (_cache.Counts(address, ref name, use))
            {
                names.Add(name.Name);
            }
        }

        if (decided is not null && !names.Exists(name => ServerNameCheck.SameName(name, decided)))
        {
            names.Add(decided);
        }

        return names;
    }

    /// <summary>
    /// Decides <paramref name="address"/> on the ports its entries allow, without a port (an entry written with
    /// <c>:PORTS</c> counts as allowing the address); <see cref="CheckDestination"/> decides a connection.
    /// </summary>
    /// <param name="address">The original destination address.</param>
    /// <returns>The decision and its reason.</returns>
    public PolicyDecision CheckAddress(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        return Decide(CheckStatic(address, AnyPort, out string? portDenial) ?? FromCache(address, _consultCache ? _cache.Lookup(address) : default, AnyPort, portDenial));
    }

    /// <summary>Decides a connection to <paramref name="destination"/>: its address, then its port against the entry
    /// that allowed the address (for a learned address, the entries of the names it was learned from).</summary>
    /// <param name="destination">The original destination.</param>
    /// <returns>The decision and its reason; <see cref="DecisionReason.PortNotAllowed"/> names the entry whose ports do
    /// not include the port.</returns>
    public PolicyDecision CheckDestination(IPEndPoint destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        return Decide(CheckStatic(destination.Address, destination.Port, out string? portDenial)
            ?? FromCache(destination.Address, _consultCache ? _cache.Lookup(destination.Address) : default, destination.Port, portDenial));
    }

    /// <summary>
    /// Decides a connection to <paramref name="address"/>:<paramref name="port"/> that is about to be opened: when it is
    /// allowed through a learned address, the address is held live for the connection's lifetime (see
    /// <see cref="AllowlistCache.Hold"/>).
    /// </summary>
    /// <param name="address">The original destination address.</param>
    /// <param name="port">The destination port.</param>
    /// <param name="hold">The hold to dispose when the connection ends; null when nothing is held.</param>
    internal PolicyDecision CheckConnection(IPAddress address, int port, out AddressHold? hold)
    {
        ArgumentNullException.ThrowIfNull(address);
        hold = null;
        PolicyDecision? known = CheckStatic(address, port, out string? portDenial);
        if (known is { } decided)
        {
            return Decide(decided);
        }

        // Decided before anything is held: a hold taken and released for a connection denied on its port would restart
        // the address's grace (a review: a denied attempt every 50 s kept an address learned with a 30 s TTL live for
        // 50 minutes). Then held through the name whose entry allowed the port, if that name still counts (the cache
        // checks under its lock); if it stopped counting in between, decided again on what is known now.
        PolicyDecision decision = FromCache(address, _consultCache ? _cache.Lookup(address) : default, port, portDenial);
        for (int attempt = 1; decision.IsAllowed && _consultCache; attempt++)
        {
            string name = decision.Subject!;
            CacheLookup held = _cache.Hold(address, name, OtherNamesAllowing(address, port, name), out hold);
            if (hold is not null)
            {
                decision = FromState(held); // through the name held, with that name's own expiry
                break;
            }

            decision = FromCache(address, held, port, portDenial);
            if (attempt == MaxHoldAttempts)
            {
                break; // the names changed under every attempt: allowed as decided last, without a hold
            }
        }

        return Decide(decision);
    }

    /// <summary>
    /// The names of <paramref name="address"/> other than <paramref name="decided"/> that count and whose entries allow
    /// <paramref name="port"/>; null when none (an address learned from one name: nothing is allocated). A connection
    /// holds every name it may be to, not only the one its decision named (the one learned last): a review found
    /// a pooled connection to <c>api.example.com</c> keeping <c>web.example.com</c> counting instead, so that an hour
    /// later a ClientHello naming <c>api.example.com</c> was refused while that connection was open, and another port
    /// of <c>api.example.com</c> was allowed or not by which name had been learned first.
    /// </summary>
    private string[]? OtherNamesAllowing(IPAddress address, int port, string decided)
    {
        IReadOnlyList<LearnedName> names = _cache.NamesOf(address);
        if (names.Count < 2)
        {
            return null;
        }

        AddressUse? use = _cache.UseOf(address);
        Span<bool> allowing = stackalloc bool[names.Count];
        int count = 0;
        for (int i = 0; i < names.Count; i++)
        {
            LearnedName name = names[i];
            allowing[i] = !string.Equals(name.Name, decided, StringComparison.OrdinalIgnoreCase) && _cache.Counts(address, ref name, use)
                && FindNameRules(name.Name) is { } rules && AllowsAny(rules, port);
            count += allowing[i] ? 1 : 0;
        }

        if (count == 0)
        {
            return null;
        }

        var others = new string[count];
        for (int i = 0, next = 0; i < names.Count; i++)
        {
            if (allowing[i])
            {
                others[next++] = names[i].Name;
            }
        }

        return others;
    }

    /// <summary>How many times <see cref="CheckConnection"/> decides again when the name it decided through stopped
    /// counting before its hold was taken (each time a name expired or a learning changed in the microseconds between).</summary>
    private const int MaxHoldAttempts = 3;

    /// <summary>
    /// The one place report mode acts: in <see cref="EgressMode.Enforce"/>, or for an allowed decision, the decision
    /// itself; in <see cref="EgressMode.Report"/> a denial is allowed with <see cref="PolicyDecision.WouldDeny"/>,
    /// except disabled egress (the switch means off) and internal ranges (instance metadata, loopback, private ranges:
    /// a security boundary, not an allowlist gap; they stay denied and say so). The parent's own addresses are kept
    /// denied by <see cref="ParentAddressDenial"/>.
    /// </summary>
    private PolicyDecision Decide(PolicyDecision decision) =>
        Mode != EgressMode.Report || decision.IsAllowed ? decision
        : decision.Reason switch
        {
            DecisionReason.EgressDisabled => decision,
            DecisionReason.InternalRange or DecisionReason.ParentAddress => decision.Kept(),
            _ => decision.Relaxed(),
        };

    /// <summary>The denial of a connection to one of the parent's own addresses (<paramref name="parentInterface"/>
    /// holds it), which report mode does not relax.</summary>
    internal PolicyDecision ParentAddressDenial(string parentInterface) =>
        Decide(new PolicyDecision(false, DecisionReason.ParentAddress, parentInterface));

    /// <summary>
    /// The name a would-deny line about a connection to <paramref name="address"/> names, for
    /// <see cref="Diagnostics.WouldDenyLog"/> and so for the entry report-to-allowlist proposes: the name
    /// <paramref name="decision"/>'s reason names (<c>name tls.example.net not in allowlist</c>, <c>learned from ...</c>);
    /// for <see cref="DecisionReason.PortNotAllowed"/> through a name's entry, the name learned last that counts and that entry
    /// allows; otherwise the name whose learning of the address expires last, normally the one learned last (report mode
    /// learns names the list does not allow too). Null when none, or when the list holds no name entry. The proxy cannot tell which of several names sharing
    /// an address an application resolved; this is the name its decision went by (a trial: the line named
    /// <c>hello.egress.test</c>, learned first, while its reason named <c>tls.allowed.test</c>, and report-to-allowlist
    /// proposed the wrong name's port).
    /// </summary>
    internal string? LearnedNameOf(IPAddress address, PolicyDecision decision)
    {
        if (!_consultCache)
        {
            return null;
        }

        return decision.LearnedName
            ?? (decision.Reason == DecisionReason.PortNotAllowed && decision.Subject is { } entry ? NameAllowedBy(address, entry) : null)
            ?? _cache.Lookup(address).Name;
    }

    /// <summary>The name of <paramref name="address"/> learned last that counts and whose entries include the one written
    /// <paramref name="entry"/>; null when none (the entry is an address or network entry).</summary>
    private string? NameAllowedBy(IPAddress address, string entry)
    {
        IReadOnlyList<LearnedName> names = _cache.NamesOf(address);
        AddressUse? use = _cache.UseOf(address);
        for (int i = names.Count - 1; i >= 0; i--) // from the one learned last, as the decision reads them
        {
            LearnedName name = names[i];
            if (_cache.Counts(address, ref name, use) && FindNameRules(name.Name) is { } rules
                && Array.Exists(rules, rule => string.Equals(rule.Text, entry, StringComparison.Ordinal)))
            {
                return name.Name;
            }
        }

        return null;
    }

    /// <summary>The port of a check that has none (<see cref="CheckAddress"/>): every entry's ports allow it. Not 0,
    /// which a (malformed) tunnel request can carry and which no entry's ports include.</summary>
    private const int AnyPort = -1;

    private static bool Allows(DestinationRule rule, int port) => port == AnyPort || PortSet.Allows(rule.Ports, port);

    private static bool AllowsAny(DestinationRule[] rules, int port)
    {
        foreach (DestinationRule rule in rules)
        {
            if (Allows(rule, port))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Whether an entry names exactly <paramref name="address"/> on <paramref name="port"/>: an address entry,
    /// or a network entry of a single address (<c>/32</c>, <c>/128</c>), whose ports include the port. A wider network
    /// that merely covers it does not count, nor does an entry for the address on other ports (a red-team trial:
    /// <c>198.18.0.1:22</c> beside <c>198.18.0.0/24</c> let every port of the parent's own address through).</summary>
    internal bool NamesExactly(IPAddress address, int port)
    {
        UInt128 value = AddressValue.Of(address);
        if (_addresses.TryGetValue(value, out DestinationRule[]? rules) && AllowsAny(rules, port))
        {
            return true;
        }

        foreach (var (block, rule) in _networks)
        {
            if (block.PrefixLength == 128 && block.Contains(value) && Allows(rule, port))
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

    /// <summary>Whether <paramref name="address"/> is still learned from <paramref name="name"/> (its learning live, or
    /// held by a connection): an address remembered from an earlier answer is tried for the name only while it is.</summary>
    internal bool StillLearnedFrom(IPAddress address, string name)
    {
        IReadOnlyList<LearnedName> names = _cache.NamesOf(address);
        AddressUse? use = names.Count == 0 ? null : _cache.UseOf(address);
        for (int i = 0; i < names.Count; i++)
        {
            LearnedName learned = names[i];
            if (string.Equals(learned.Name, name, StringComparison.OrdinalIgnoreCase) && _cache.Counts(address, ref learned, use))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The decision made without the cache (disabled, static entry, internal range, <c>*</c>); null when the
    /// cache decides. <paramref name="portDenial"/>: an entry that covers the address (or <c>*</c>) but not the port,
    /// for the cache's denial.</summary>
    private PolicyDecision? CheckStatic(IPAddress address, int port, out string? portDenial)
    {
        portDenial = null;
        if (!IsEnabled)
        {
            return new PolicyDecision(false, DecisionReason.EgressDisabled);
        }

        UInt128 value = AddressValue.Of(address);
        if (TryFindStaticEntry(value, port, out string? entry, ref portDenial))
        {
            return new PolicyDecision(true, DecisionReason.StaticEntry, entry);
        }

        // An entry that covers the address on other ports does not end the check: "*:443" or a name learned for the
        // address may still allow this port (the same address under several entries allows the union of their ports;
        // a review found "203.0.113.0/24:8000-8100" denying 203.0.113.9:443 that "*:443" allowed).
        if (IsInternal(value, out string? rangeName))
        {
            return portDenial is not null
                ? new PolicyDecision(false, DecisionReason.PortNotAllowed, portDenial) // the entry that names it is the one to fix
                : new PolicyDecision(false, DecisionReason.InternalRange, rangeName);
        }

        if (AllowAllAllows(port, ref portDenial, out string? allowing))
        {
            return new PolicyDecision(true, DecisionReason.AllowAll, allowing);
        }

        return null;
    }

    /// <summary>
    /// Whether a <c>*</c> entry allows <paramref name="port"/>: a connection on it to an address outside the internal
    /// ranges that no address or network entry covers is then allowed by <c>*</c> (<see cref="DecisionReason.AllowAll"/>)
    /// before the learned addresses are consulted, whichever names the address was learned from, as
    /// <see cref="CheckDestination"/> decides it. For <c>check NAME:PORT</c>, which has a name but no address.
    /// </summary>
    internal bool AllowAllAllows(int port) => AllowAllEntry(port) is not null;

    /// <summary>The text of the <c>*</c> entry that allows <paramref name="port"/> (<c>*</c>, <c>*:443</c>), or null
    /// (<see cref="AllowAllAllows(int)"/>).</summary>
    internal string? AllowAllEntry(int port)
    {
        string? portDenial = null;
        return AllowAllAllows(port, ref portDenial, out string? allowing) ? allowing : null;
    }

    /// <summary>The <c>*</c> step of <see cref="CheckStatic"/>: whether a <c>*</c> entry allows <paramref name="port"/>,
    /// and which (<paramref name="allowing"/>: <c>*</c>, <c>*:443</c>); when one does not, <paramref name="portDenial"/>
    /// (if still null) is set to its text.</summary>
    private bool AllowAllAllows(int port, ref string? portDenial, out string? allowing)
    {
        foreach (DestinationRule rule in _allowAll)
        {
            if (Allows(rule, port))
            {
                allowing = rule.Text;
                return true;
            }

            portDenial ??= rule.Text;
        }

        allowing = null;
        return false;
    }

    /// <summary>
    /// For <c>check ADDRESS</c> without a port: the address and network entries that cover <paramref name="address"/>
    /// and, outside the internal ranges, the <c>*</c> entries, when every one of them limits the ports (so "allowed"
    /// holds only on theirs); null when one allows every port or none covers it.
    /// </summary>
    internal string[]? PortLimitedEntries(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        UInt128 value = AddressValue.Of(address);
        var covering = new List<DestinationRule>();
        if (_addresses.TryGetValue(value, out DestinationRule[]? rules))
        {
            covering.AddRange(rules);
        }

        covering.AddRange(_networks.Where(network => network.Block.Contains(value)).Select(network => network.Rule));
        if (!IsInternal(value, out _))
        {
            covering.AddRange(_allowAll);
        }

        return !IsEnabled || covering.Count == 0 || covering.Exists(rule => rule.Ports is null) ? null : [.. covering.Select(rule => rule.Text)];
    }

    /// <summary>The decision the cache's state for an address gives, before its names and ports are looked at.</summary>
    private static PolicyDecision FromState(CacheLookup lookup) => lookup.State switch
    {
        CacheState.Live when lookup.InUse => new PolicyDecision(true, DecisionReason.LearnedInUse, lookup.Name, connections: lookup.Connections),
        CacheState.Live when lookup.InGrace => new PolicyDecision(true, DecisionReason.LearnedInGrace, lookup.Name, lookup.Time),
        CacheState.Live => new PolicyDecision(true, DecisionReason.Learned, lookup.Name, lookup.Time),
        CacheState.Expired => new PolicyDecision(false, DecisionReason.LearnedExpired, lookup.Name, lookup.Time),
        CacheState.Evicted => new PolicyDecision(false, DecisionReason.NeverLearned, lookup.Name, lookup.Time),
        _ => new PolicyDecision(false, DecisionReason.NeverLearned),
    };

    private PolicyDecision FromCache(IPAddress address, CacheLookup lookup, int port, string? portDenial)
    {
        PolicyDecision decision = FromState(lookup);
        if (!decision.IsAllowed)
        {
            return portDenial is not null && lookup.State is CacheState.NeverLearned or CacheState.Evicted ? new PolicyDecision(false, DecisionReason.PortNotAllowed, portDenial) : decision;
        }

        // One pass over the address's names: whether any of them is one this policy allows (report mode learns every
        // answered name; enforce would have learned none of this address's, and in enforce mode only a cache this
        // policy shares, another policy's learning or AllowlistCache.Learn called directly, holds such names: an
        // address another policy learned is not allowed here through that learning), and, with ports, whether the
        // entries it was allowed through allow this port. An allowed decision names the name whose entry allowed it, with
        // that name's own expiry: the subject is the host hint a restarted parent re-learns and the name a failover tries
        // other addresses of (a review: the hint named a name allowed on port 25 for a connection to 443, which such a
        // parent denied). The names are read from the one learned last (NamesOf keeps them in the order last learned):
        // the proxy cannot tell which name an application resolved, and the last one answered is the likeliest, so it is
        // the one an allowed decision and a denial name (a trial: with www learned first and secure.allowed.test just
        // resolved, report mode blamed www's entry for a connection to port 443, and report-to-allowlist proposed
        // www.allowed.test:443; an allowed line named "learned from mixed.allowed.test" for an app that had just
        // resolved another name of the address).
        bool checkPort = _hasPorts && port != AnyPort;
        bool learnedFromAllowedName = false, sawCounting = false;
        string? denial = null, unlistedLast = null;
        IReadOnlyList<LearnedName> names = _cache.NamesOf(address); // indexed: no enumerator is allocated
        AddressUse? use = _cache.UseOf(address);
        for (int i = names.Count - 1; i >= 0; i--)
        {
            LearnedName name = names[i];
            if (!_cache.Counts(address, ref name, use))
            {
                continue; // expired and not held: its entry's ports no longer apply, whatever keeps the address live
            }

            DestinationRule[]? rules = FindNameRules(name.Name);
            unlistedLast = !sawCounting && rules is null ? name.Name : unlistedLast;
            sawCounting = true;
            if (rules is null)
            {
                continue;
            }

            learnedFromAllowedName = true;
            if (!checkPort)
            {
                return FromState(_cache.LookupThrough(name, use));
            }

            foreach (DestinationRule rule in rules)
            {
                if (Allows(rule, port))
                {
                    return FromState(_cache.LookupThrough(name, use));
                }

                denial ??= rule.Text;
            }
        }

        // Denied: the name learned last is blamed: one the list does not allow (report mode learned it), else the entry
        // of the listed name learned last.
        return !learnedFromAllowedName || unlistedLast is not null
            ? new PolicyDecision(false, DecisionReason.NameNotAllowed, unlistedLast ?? lookup.Name)
            : new PolicyDecision(false, DecisionReason.PortNotAllowed, denial ?? portDenial ?? lookup.Name);
    }

    /// <summary>Whether <paramref name="hostName"/> (its one trailing dot already cut) has an empty label: empty,
    /// starting or ending with a dot, or two dots in a row (RFC 1035 §3.1: only the root's label is empty).</summary>
    private static bool HasEmptyLabel(ReadOnlySpan<char> hostName) =>
        hostName.IsEmpty || hostName[0] == '.' || hostName[^1] == '.' || hostName.Contains("..", StringComparison.Ordinal);

    /// <summary>For <c>check NAME:PORT</c>: the entry a connection to an address learned from <paramref name="hostName"/>
    /// would be allowed through on <paramref name="port"/> (true), else the name's first entry (false); null when no
    /// entry allows the name.</summary>
    internal (string Entry, bool PortAllowed)? CheckNamePort(string hostName, int port)
    {
        DestinationRule[]? rules = IsEnabled && !HasEmptyLabel(hostName.EndsWith('.') ? hostName.AsSpan()[..^1] : hostName) ? FindNameRules(hostName) : null;
        if (rules is null)
        {
            return null;
        }

        foreach (DestinationRule rule in rules)
        {
            if (Allows(rule, port))
            {
                return (rule.Text, true);
            }
        }

        return (rules[0].Text, false);
    }

    /// <summary>The entries <paramref name="hostName"/> is allowed through when each of them limits the ports (a
    /// connection to its answers is allowed on those ports only); null when one allows every port, or none matches.</summary>
    internal string[]? PortLimitedEntries(string hostName)
    {
        DestinationRule[]? rules = IsEnabled ? FindNameRules(hostName) : null;
        if (rules is null || Array.Exists(rules, rule => rule.Ports is null))
        {
            return null;
        }

        return Array.ConvertAll(rules, rule => rule.Text);
    }

    /// <summary>The entries a name is allowed through, most specific first: its exact entries, else the longest
    /// matching wildcard's, else <c>*</c>; null when none.</summary>
    private DestinationRule[]? FindNameRules(ReadOnlySpan<char> hostName)
    {
        if (hostName.EndsWith('.'))
        {
            hostName = hostName[..^1];
        }

        if (_hosts.TryGetValue(hostName, out DestinationRule[]? rules))
        {
            return rules;
        }

        for (int dot = hostName.IndexOf('.'); dot >= 0; dot = NextDot(hostName, dot))
        {
            if (dot > 0 && _wildcardDomains.TryGetValue(hostName[(dot + 1)..], out rules))
            {
                return rules;
            }
        }

        return _allowAll.Length > 0 ? _allowAll : null;
    }

    /// <summary>Decides a DNS question for <paramref name="hostName"/> (any case, one trailing dot ignored; a name with an
    /// empty label, <c>a..example.org</c>, is denied).</summary>
    /// <param name="hostName">The question name.</param>
    /// <returns>The decision; when allowed, <see cref="PolicyDecision.Subject"/> is the entry that matched.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="hostName"/> is null.</exception>
    public PolicyDecision CheckName(string hostName)
    {
        ArgumentNullException.ThrowIfNull(hostName);
        return CheckName(hostName.AsSpan());
    }

    /// <summary>Decides a DNS question for <paramref name="hostName"/> (any case, one trailing dot ignored; a name with an
    /// empty label, <c>a..example.org</c>, is denied).</summary>
    /// <param name="hostName">The question name.</param>
    /// <returns>The decision; when allowed, <see cref="PolicyDecision.Subject"/> is the entry that matched.</returns>
    public PolicyDecision CheckName(ReadOnlySpan<char> hostName) => Decide(CheckNameEnforced(hostName));

    private PolicyDecision CheckNameEnforced(ReadOnlySpan<char> hostName)
    {
        if (!IsEnabled)
        {
            return new PolicyDecision(false, DecisionReason.EgressDisabled);
        }

        if (hostName.EndsWith('.'))
        {
            hostName = hostName[..^1];
        }

        if (HasEmptyLabel(hostName))
        {
            // An empty label is no DNS name (RFC 1035 §3.1: only the root's is empty): none is allowed, not even
            // "a..example.org" by *.example.org (a library user's trial). A question read off the wire never has one.
            return new PolicyDecision(false, DecisionReason.NameNotAllowed);
        }

        // Exact entries, then the longest domain first, so the most specific wildcard is reported; the apex itself
        // never matches a wildcard.
        DestinationRule[]? rules = FindNameRules(hostName);
        return rules is null ? new PolicyDecision(false, DecisionReason.NameNotAllowed)
            : rules[0].Kind == DestinationRuleKind.AllowAll ? new PolicyDecision(true, DecisionReason.AllowAll, rules[0].Text)
            : new PolicyDecision(true, DecisionReason.NameEntry, rules[0].Text);
    }

    /// <summary>
    /// Learns that <paramref name="name"/> (the question asked) resolved to <paramref name="address"/>, unless egress
    /// is disabled, the name is not allowed (in <see cref="EgressMode.Report"/> it is learned all the same, so that a
    /// connection to it is allowed and reported), or the address is internal and no address or network entry covers it
    /// (DNS rebinding protection, in report mode too).
    /// </summary>
    /// <param name="name">The question name that was allowed (not a CNAME target).</param>
    /// <param name="address">An A or AAAA address from the answer.</param>
    /// <param name="ttl">The record's TTL.</param>
    /// <returns>Whether the address was learned, and why not.</returns>
    public LearnResult Learn(string name, IPAddress address, TimeSpan ttl)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(address);
        if (RefusesToLearn(name, address) is { } refused)
        {
            return refused;
        }

        _cache.Learn(name, address, ttl);
        return new LearnResult(LearnOutcome.Learned);
    }

    /// <summary>
    /// As <see cref="Learn"/> for what an earlier run of this process learned (a learned-addresses file kept across a
    /// restart), with its expiry (<see cref="AllowlistCache.Restore"/>): checked against this policy as a DNS answer
    /// is, so a name the policy no longer allows, or an internal address, is not restored.
    /// </summary>
    /// <param name="name">The name the address was learned from.</param>
    /// <param name="address">The address.</param>
    /// <param name="expiresAt">When its allowance ends, before the grace (UTC ticks).</param>
    /// <returns>Restored; refused (the name or the address, as <see cref="Learn"/> would refuse them); or no room (a new
    /// address while the cache holds as many as it may: <see cref="AllowlistCache.Restore"/>).</returns>
    internal RestoreOutcome Restore(string name, IPAddress address, long expiresAt) =>
        RefusesToLearn(name, address) is not null ? RestoreOutcome.Refused
        : _cache.Restore(name, address, expiresAt) ? RestoreOutcome.Restored
        : RestoreOutcome.NoRoom;

    /// <summary>Why <paramref name="address"/> is not learned from <paramref name="name"/> (<see cref="Learn"/>); null when it is.</summary>
    private LearnResult? RefusesToLearn(string name, IPAddress address)
    {
        PolicyDecision nameDecision = CheckName(name);
        if (!nameDecision.IsAllowed)
        {
            return new LearnResult(IsEnabled ? LearnOutcome.NameNotAllowed : LearnOutcome.EgressDisabled);
        }

        return RefusesAsInternal(AddressValue.Of(address), out string? rangeName) ? new LearnResult(LearnOutcome.InternalRange, rangeName) : null;
    }

    /// <summary>Whether a DNS answer's address is refused as internal (DNS rebinding protection): it lies in an internal
    /// range (<paramref name="rangeName"/> names which) and no address or network entry covers it.</summary>
    internal bool RefusesAsInternal(UInt128 value, [NotNullWhen(true)] out string? rangeName)
    {
        string? ignored = null;
        if (TryFindStaticEntry(value, AnyPort, out _, ref ignored))
        {
            rangeName = null;
            return false;
        }

        return IsInternal(value, out rangeName);
    }

    /// <summary>For <c>check ADDRESS:PORT</c>: whether <paramref name="address"/> lies in an internal range (built-in or
    /// <c>host.internal_networks</c>), where the static rules decide alone and no learned name adds a port.</summary>
    internal bool InInternalRange(IPAddress address) => IsInternal(AddressValue.Of(address), out _);

    /// <summary>Whether <paramref name="value"/> lies in a built-in internal range (<see cref="InternalRanges"/>) or in a
    /// network of <c>host.internal_networks</c>, also as an IPv6 form that carries an IPv4 address of one (NAT64, 6to4,
    /// IPv4-compatible, IPv4-translated), as the built-in IPv4 ranges are; <paramref name="rangeName"/> names which.</summary>
    private bool IsInternal(UInt128 value, [NotNullWhen(true)] out string? rangeName)
    {
        if (InternalRanges.TryClassify(value, out rangeName) || _internalNetworks.Length == 0)
        {
            return rangeName is not null;
        }

        bool embeds = InternalRanges.GetEmbeddedIPv4(value, out UInt128 embedded) != InternalRanges.EmbeddedIPv4Form.None;
        foreach (var (block, name) in _internalNetworks)
        {
            if (block.Contains(value) || (embeds && block.Contains(embedded)))
            {
                rangeName = name;
                return true;
            }
        }

        return false;
    }

    private static int NextDot(ReadOnlySpan<char> name, int dot)
    {
        int next = name[(dot + 1)..].IndexOf('.');
        return next < 0 ? -1 : dot + 1 + next;
    }

    /// <summary>The first address or network entry (most specific first) that covers <paramref name="value"/> and allows
    /// <paramref name="port"/>; <paramref name="portDenial"/> gets the first that covers it but not the port.</summary>
    private bool TryFindStaticEntry(UInt128 value, int port, out string? entry, ref string? portDenial)
    {
        if (_addresses.TryGetValue(value, out DestinationRule[]? rules))
        {
            foreach (DestinationRule rule in rules)
            {
                if (Allows(rule, port))
                {
                    entry = rule.Text;
                    return true;
                }

                portDenial ??= rule.Text;
            }
        }

        foreach (var (block, rule) in _networks)
        {
            if (block.Contains(value))
            {
                if (Allows(rule, port))
                {
                    entry = rule.Text;
                    return true;
                }

                portDenial ??= rule.Text;
            }
        }

        entry = null;
        return false;
    }
}
