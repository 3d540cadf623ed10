using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Egress.Policy;
using Egress.Relay;
using Egress.Tunnel;
using Egress.Vsock;

namespace Egress.Configuration;

/// <summary>
/// Builds the runtime parts both hosts need from a configuration, reporting an invalid destination entry or tunnel
/// endpoint at its <c>file:line:col</c>, like every other configuration error.
/// </summary>
public static class ConfiguredComponents
{
    /// <summary>Top-level domains nobody can register a name in (special-use: RFC 6761 <c>test</c>, <c>localhost</c>,
    /// <c>invalid</c>, <c>example</c>; RFC 6762 <c>local</c>; RFC 7686 <c>onion</c>; RFC 9476 <c>alt</c>; ICANN's
    /// <c>internal</c>): queries for them stop at the root, so a wildcard over one opens no name an exfiltrating dependency
    /// could buy, and it is not warned about (a trial: <c>*.test</c> was said to be open to anyone). Not <c>arpa</c>:
    /// whoever holds addresses holds their reverse zones (a review: data in PTR queries under <c>ip6.arpa</c>).</summary>
    private static readonly HashSet<string> SpecialUseTopLevelDomains =
        new(["test", "localhost", "invalid", "example", "local", "onion", "alt", "internal"], StringComparer.OrdinalIgnoreCase);

    /// <summary>Creates the allowlist cache with the <c>[dns]</c> TTL floor, grace and size bound.</summary>
    /// <param name="configuration">The configuration.</param>
    /// <param name="timeProvider">The clock; the system clock when null.</param>
    /// <returns>An empty cache.</returns>
    public static AllowlistCache CreateCache(this EgressConfiguration configuration, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return new AllowlistCache(new AllowlistCacheOptions
        {
            TtlFloor = configuration.Dns.TtlFloor,
            Grace = configuration.Dns.Grace,
            MaxEntries = configuration.Dns.CacheMaxEntries,
            TimeProvider = timeProvider ?? TimeProvider.System,
        });
    }

    /// <summary>Creates the policy from <c>[egress]</c> (<c>enabled</c>, <c>mode</c>, <c>destinations</c>, <c>ports</c>),
    /// with <c>host.internal_networks</c> internal as the built-in ranges are.</summary>
    /// <param name="configuration">The configuration.</param>
    /// <param name="cache">The cache of DNS-learned addresses the policy consults.</param>
    /// <returns>The policy.</returns>
    /// <exception cref="ConfigurationException">A destination entry is invalid; the message gives its location.</exception>
    public static EgressPolicy CreatePolicy(this EgressConfiguration configuration, AllowlistCache cache)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return configuration.CreatePolicyWith(cache, configuration.Host.InternalNetworks);
    }

    /// <summary>As <see cref="CreatePolicy(EgressConfiguration, AllowlistCache)"/>, with the internal networks of
    /// another file (a <c>[[host.enclaves]]</c> file's policy takes egress-host's own file's).</summary>
    internal static EgressPolicy CreatePolicyWith(this EgressConfiguration configuration, AllowlistCache cache, IReadOnlyList<System.Net.IPNetwork> internalNetworks)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentNullException.ThrowIfNull(cache);
        return EgressPolicy.FromRules(configuration.Egress.Enabled, [.. configuration.Egress.Rules()], cache, configuration.Egress.Mode, configuration.Egress.TlsServerName, internalNetworks);
    }

    /// <summary>
    /// Computes the digest of the settings that decide allow and deny (<c>[egress]</c> and <c>[dns]</c>; see
    /// <see cref="PolicyDigest"/>). Both hosts log it at start; log it too when composing a side of your own, so that
    /// the two sides can be compared.
    /// </summary>
    /// <param name="configuration">The configuration.</param>
    /// <returns>The digest; the same for files that differ only in comments, whitespace, order or per-side settings.</returns>
    /// <exception cref="ConfigurationException">A destination entry is invalid; the message gives its location.</exception>
    public static PolicyDigest GetPolicyDigest(this EgressConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return PolicyDigest.Compute(configuration);
    }

    /// <summary>Creates the relay settings from <c>[relay]</c>: the idle timeout and whether to splice.</summary>
    /// <param name="configuration">The configuration.</param>
    /// <returns>The options, with the system clock.</returns>
    public static RelayOptions CreateRelayOptions(this EgressConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return new RelayOptions { IdleTimeout = configuration.Relay.IdleTimeout, HalfClosedTimeout = configuration.Relay.HalfClosedTimeout, UseSplice = configuration.Relay.Splice };
    }

    /// <summary>
    /// Lists what in the file is valid but probably not meant, each located like an error:
    /// <c>enclave.toml:3:17: warning: destination "0.0.0.0/1" also allows internal ranges it does not name: ... (key 'egress.destinations')</c>.
    /// <list type="bullet">
    /// <item>A policy that denies everything: <c>enabled = true</c> with no destinations (which an Evervault file reads as
    /// allow-all), <c>enabled = false</c> with destinations it does not use.</item>
    /// <item>An <c>enclave.dns_query_timeout_ms</c> not greater than <c>host.dns_timeout_ms</c> (the enclave answers
    /// SERVFAIL before the parent has heard from its upstreams), and a <c>tunnel.enclave_endpoint</c> at VSOCK CID 2
    /// (<c>vsock://host:PORT</c>, the hypervisor's CID; a Nitro enclave's parent is CID 3).</item>
    /// <item>A file copied from an Evervault enclave (<c>uuid</c>, <c>app_uuid</c> or <c>team_uuid</c>) without
    /// <c>egress.ports</c>: Evervault would allow port 443 only, Egress allows every port of an entry that names none.</item>
    /// <item>A wildcard over a whole top-level domain (<c>*.com</c>), over another public suffix (<c>*.co.uk</c>,
    /// <c>*.s3.amazonaws.com</c>) or over a domain that holds some (<c>*.amazonaws.com</c>), by the Public Suffix List
    /// of 2023-02-09 shipped in the package; a bare IPv6 address whose last group reads as a port
    /// (<c>2001:db8::1:443</c>: decimal digits without a leading zero after an IPv6 address that has <c>::</c>).</item>
    /// <item>An address or network entry inside loopback or link-local (<c>[::1]</c>, <c>169.254.169.254</c>), which opens
    /// the parent's own services or the instance metadata service to the enclave (a loopback network: nothing at all);
    /// an IP network entry broader than an internal range it contains, which opens that range too, because explicit
    /// entries are trusted.</item>
    /// <item>An entry another one makes moot: a repeat, or a narrower one beside a wider one for the same destination,
    /// whose ports the two unite.</item>
    /// <item>A <c>proxy_listen</c> or <c>dns_listen</c> address other than loopback (<c>0.0.0.0</c>, <c>[::]</c>, or an
    /// interface's beside a loopback one).</item>
    /// </list>
    /// </summary>
    /// <param name="configuration">The configuration.</param>
    /// <returns>The warnings: the file-wide ones first, then each entry's in their order, then the moot entries; empty
    /// when there are none.</returns>
    public static IReadOnlyList<string> GetWarnings(this EgressConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return configuration.GetWarningsWith(configuration.Host.InternalNetworks);
    }

    /// <summary>As <see cref="GetWarnings"/>, with the internal networks of another file (a <c>[[host.enclaves]]</c>
    /// file's policy takes egress-host's own file's, <see cref="CreatePolicyWith"/>).</summary>
    internal static IReadOnlyList<string> GetWarningsWith(this EgressConfiguration configuration, IReadOnlyList<IPNetwork> internalNetworks)
    {
        var warnings = new List<string>();
        if (PolicyCaution(configuration) is { } caution)
        {
            warnings.Add(caution);
        }

        if (DnsTimeoutCaution(configuration) is { } dnsTimeouts)
        {
            warnings.Add(dnsTimeouts);
        }

        warnings.AddRange(OffLoopbackListenCautions(configuration));
        if (EnclaveEndpointCaution(configuration) is { } enclaveEndpoint)
        {
            warnings.Add(enclaveEndpoint);
        }

        if (EvervaultPortsCaution(configuration) is { } evervaultPorts)
        {
            warnings.Add(evervaultPorts);
        }

        if (UnusedEgressCaution(configuration) is { } unusedEgress)
        {
            warnings.Add(unusedEgress);
        }

        foreach (var entry in configuration.Egress.Entries)
        {
            if (entry.Rule is { Kind: DestinationRuleKind.WildcardSubdomain, HostName: { } domain } && !domain.Contains('.', StringComparison.Ordinal)
                && !SpecialUseTopLevelDomains.Contains(domain))
            {
                // "*.com": every name under a top-level domain, which an exfiltrating dependency can register.
                warnings.Add(
                    $"{entry.Location}: warning: destination \"{entry.Text}\" allows every name under the top-level domain \"{domain}\", "
                    + "which anyone can register a name in; list the domains meant (\"*.example.com\") (key 'egress.destinations')");
                continue;
            }

            if (PublicSuffixCaution(entry) is { } publicSuffix)
            {
                warnings.Add(publicSuffix);
                continue;
            }

            if (PortLikeLastGroup(entry) is var (head, port))
            {
                // "2001:db8::1:443" is a valid address: an operator who meant port 443 of 2001:db8::1 gets another one.
                warnings.Add(string.Create(
                    CultureInfo.InvariantCulture,
                    $"{entry.Location}: warning: destination \"{entry.Text}\" is the address {entry.Text.Trim()}; for port {port} of {head} write \"[{head}]:{port}\" (key 'egress.destinations')"));
                continue;
            }

            if (ParentLocalCaution(entry) is { } parentLocal)
            {
                warnings.Add(parentLocal);
                continue;
            }

            if (entry.Rule?.Network is not { } network)
            {
                continue;
            }

            var opened = InternalRanges.OpenedWithoutNaming(network, internalNetworks);
            if (opened.Count > 0)
            {
                warnings.Add(
                    $"{entry.Location}: warning: destination \"{entry.Text}\" also allows internal ranges it does not name: "
                    + $"{string.Join(", ", opened)}; if that is meant, list them as entries of their own (key 'egress.destinations')");
            }
        }

        warnings.AddRange(RedundantEntryCautions(configuration.Egress));
        return warnings;
    }

    /// <summary>
    /// A wildcard over a public suffix of more than one label (<c>*.co.uk</c>, <c>*.s3.amazonaws.com</c>,
    /// <c>*.github.io</c>), or over a domain that holds such suffixes (<c>*.amazonaws.com</c>): by the Public Suffix List,
    /// anyone can register or create names there, so a dependency can reach a name of its own (an attacker's bucket).
    /// </summary>
    private static string? PublicSuffixCaution(DestinationEntry entry)
    {
        if (entry.Rule is not { Kind: DestinationRuleKind.WildcardSubdomain, HostName: { } domain } || !domain.Contains('.', StringComparison.Ordinal))
        {
            return null;
        }

        var (isPublicSuffix, below, fromList, fromAdditions) = PublicSuffixList.FindShipped(domain);
        const string Additions = "Egress's list of shared storage and API endpoints";
        string list = $"Public Suffix List, {PublicSuffixList.ShippedVersion}";
        string source = (fromList, fromAdditions) switch
        {
            (true, true) => $"{list}, and {Additions}",
            (false, true) => Additions,
            _ => list,
        };
        if (isPublicSuffix && IsReverseDnsTree(domain))
        {
            // Nobody registers names under in-addr.arpa or ip6.arpa: each address block's holder is delegated its part,
            // and can put any record there (an A record to an address of theirs, a server that logs the queries).
            return $"{entry.Location}: warning: destination \"{entry.Text}\" allows every name under \"{domain}\", the reverse-DNS tree "
                + $"({source}): whoever holds an address block (a cloud customer setting PTR records, an attacker's own network) "
                + "answers for the names of its part, with any record; "
                + "list the reverse zones meant (\"*.2.0.192.in-addr.arpa\" for 192.0.2.0/24) (key 'egress.destinations')";
        }

        if (isPublicSuffix)
        {
            return $"{entry.Location}: warning: destination \"{entry.Text}\" allows every name under \"{domain}\", a public suffix "
                + $"({source}): anyone can register or create names there; "
                + $"list the names or domains meant (\"name.{domain}\", \"*.name.{domain}\") (key 'egress.destinations')";
        }

        if (below.Count == 0)
        {
            return null;
        }

        const int Shown = 3;
        string examples = string.Join(", ", below.Take(Shown)) + (below.Count > Shown
            ? string.Create(CultureInfo.InvariantCulture, $" and {below.Count - Shown} more")
            : string.Empty);
        return $"{entry.Location}: warning: destination \"{entry.Text}\" allows every name under \"{domain}\", which holds public suffixes "
            + $"where anyone can create names ({examples}; {source}); "
            + "list the names meant (key 'egress.destinations')";
    }

    /// <summary>in-addr.arpa and ip6.arpa (RFC 1035 §3.5, RFC 3596 §2.5), whose names are delegated by address, not registered.</summary>
    private static bool IsReverseDnsTree(string domain) =>
        domain.Equals("in-addr.arpa", StringComparison.OrdinalIgnoreCase) || domain.Equals("ip6.arpa", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// An entry that allows nothing another entry for the same name, wildcard, address or network (the same one, not one
    /// network inside another: a single address there still names itself) does not already allow
    /// (entries for one destination allow the union of their ports): a repeat, or a narrower one that a wider one made
    /// moot (<c>"api.stripe.com:443"</c> beside <c>"api.stripe.com"</c>, which a trial found silently allowed every port).
    /// With <c>egress.ports</c>, an entry without its own ports has those.
    /// </summary>
    private static IEnumerable<string> RedundantEntryCautions(EgressSection egress)
    {
        // Each entry is compared with the entries of its own destination only (a new user's trial: compared with every
        // entry, 40,000 destinations took 22 s to load and 100,000 several minutes, past bootstrap.sh's start timeout).
        var entries = egress.Entries;
        var byDestination = new Dictionary<(DestinationRuleKind, string?, (UInt128, int)?, (UInt128, int)?), List<int>>();
        for (int i = 0; i < entries.Count; i++)
        {
            if (entries[i].Rule is { Ports.Repeated: { } again })
            {
                yield return $"{entries[i].Location}: warning: destination \"{entries[i].Text}\" names {(again.Contains('-', StringComparison.Ordinal) ? "ports" : "port")} {again} more than once; "
                    + "remove the repeat, or write the port meant (key 'egress.destinations')";
            }

            if (entries[i].Rule is { } rule)
            {
                var key = DestinationKey(rule);
                if (!byDestination.TryGetValue(key, out List<int>? indexes))
                {
                    byDestination[key] = indexes = [];
                }

                indexes.Add(i);
            }
        }

        for (int i = 0; i < entries.Count; i++)
        {
            if (entries[i].Rule is not { } rule || byDestination[DestinationKey(rule)] is not { Count: > 1 } sameDestination)
            {
                continue;
            }

            // A wider entry is named first (it is the one that opened more); else an earlier one that allows the same.
            PortSet? ports = rule.Ports ?? egress.Ports;
            int wider = -1, repeated = -1;
            foreach (int j in sameDestination)
            {
                if (wider >= 0)
                {
                    break;
                }

                DestinationRule other = entries[j].Rule!;
                if (j == i || !PortSet.IsWithin(ports, other.Ports ?? egress.Ports))
                {
                    continue;
                }

                if (!PortSet.IsWithin(other.Ports ?? egress.Ports, ports))
                {
                    wider = j;
                }
                else if (j < i && repeated < 0)
                {
                    repeated = j;
                }
            }

            if ((wider >= 0 ? wider : repeated) is var by and >= 0)
            {
                PortSet? byPorts = entries[by].Rule!.Ports ?? egress.Ports;
                string where = byPorts is null ? "on every port" : $"on {(byPorts.IsSinglePort ? "port" : "ports")} {byPorts.Text}";
                yield return wider < 0
                    ? $"{entries[i].Location}: warning: destination \"{entries[i].Text}\" repeats \"{entries[by].Text}\" ({entries[by].Location}), which allows the same {where}; remove one (key 'egress.destinations')"
                    : $"{entries[i].Location}: warning: destination \"{entries[i].Text}\" adds nothing: \"{entries[by].Text}\" ({entries[by].Location}) allows the same destination {where} "
                        + "(the entries of one destination allow the union of their ports); remove one, or give that one only the ports meant (key 'egress.destinations')";
            }
        }

        // As the policy keys them: an IPv4-mapped address is its IPv4 address.
        static (DestinationRuleKind, string?, (UInt128, int)?, (UInt128, int)?) DestinationKey(DestinationRule rule) =>
            (rule.Kind, rule.HostName, Key(rule.Address), Key(rule.Network));

        static (UInt128 First, int PrefixLength)? Key(object? addressOrNetwork) => addressOrNetwork switch
        {
            IPAddress address => (AddressValue.Of(address), 128),
            IPNetwork network when AddressBlock.From(network) is var block => (block.First, block.PrefixLength),
            _ => null,
        };
    }

    /// <summary>
    /// For an address or network entry wholly inside loopback or link-local (<see cref="InternalRanges.ParentLocalRange"/>),
    /// the warning that says what it opens: one of the parent's own addresses opens its own services to code that speaks
    /// the tunnel protocol (an application's loopback connections stay in the enclave); a loopback network opens nothing
    /// (egress-host refuses its own addresses no entry names one by one); link-local is dialled by the parent because the
    /// entry names it (the parent refuses internal addresses no entry names). A trial found <c>"[::1]"</c> and
    /// <c>"169.254.169.254"</c> loaded without a word, and through the first a tunnel client in the enclave read a service
    /// on the parent's own loopback. Null for any other entry.
    /// </summary>
    private static string? ParentLocalCaution(DestinationEntry entry)
    {
        AddressBlock block;
        if (entry.Rule?.Network is { } network)
        {
            block = AddressBlock.From(network);
        }
        else if (entry.Rule?.Address is { } address)
        {
            block = AddressBlock.From(new IPNetwork(address, address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128));
        }
        else
        {
            return null;
        }

        if (InternalRanges.ParentLocalRange(block) is not var (range, own, embedded))
        {
            return null;
        }

        string what = (own, embedded, single: block.PrefixLength == 128) switch
        {
            // egress-host refuses its own addresses unless an entry names the one address (ParentAddresses).
            (true, _, false) => "which allows nothing: an application's connections to the enclave's own loopback stay in the enclave (the "
                + "rules do not redirect them), and egress-host refuses its own addresses unless an entry names the one address",
            (true, false, true) => "the parent's own services: an application in the enclave never reaches them through it (its connections "
                + "to this address stay in the enclave, the rules do not redirect them), only code that opens tunnel streams itself does",
            (true, true, true) => "the parent dials it for the enclave because this entry names it",
            _ => "the parent dials it for the enclave because this entry names it (169.254.169.254 and fd00:ec2::254 are the "
                + "instance metadata service, which hands out the parent's IAM role credentials)",
        };
        return $"{entry.Location}: warning: destination \"{entry.Text}\" is {range}, {what}; remove it unless that is meant (key 'egress.destinations')";
    }

    /// <summary>For a bare IPv6 address entry (no prefix length, no ports) that may have been meant as
    /// <c>ADDRESS:PORT</c>, the address (as written) and port of that reading; null for any other entry. The rule is
    /// <see cref="EndPointText.PortLikeLastGroup"/>'s: <c>2001:db8::1:443</c> is read both ways, <c>fd00::53</c> is not.</summary>
    /// <param name="entry">A destination entry.</param>
    internal static (string Address, int Port)? PortLikeLastGroup(DestinationEntry entry)
    {
        if (entry.Rule is not { Kind: DestinationRuleKind.Address, Ports: null, Address.AddressFamily: AddressFamily.InterNetworkV6 })
        {
            return null;
        }

        return EndPointText.PortLikeLastGroup(entry.Text.Trim());
    }

    // A policy that denies everything while it looks meant to allow something: enabled = true with no destinations (an
    // Evervault file allows everything with an empty list; Egress fails closed), or enabled = false with destinations it
    // will not use. Located at the key the file sets.
    private static string? PolicyCaution(EgressConfiguration configuration)
    {
        int count = configuration.Egress.Entries.Count;
        (string key, string? caution) = (configuration.Egress.Enabled, count) switch
        {
            // In report mode an empty list allows everything (each connection logged as a would-deny): the usual
            // start of an allowlist, not a mistake.
            (true, 0) when configuration.Egress.Mode == Policy.EgressMode.Report => (string.Empty, null),
            (true, 0) => ("egress.destinations", "egress.enabled = true with no destinations: every connection and every DNS name is denied (an Evervault enclave allows everything with an empty list; Egress fails closed: write destinations = [\"*\"] to allow everything)"),
            (false, > 0) => ("egress.enabled", configuration.GetLocation("egress.enabled") is null
                // Not written: said as the default it is, where the list is (a trial read "egress.enabled = false" at the destinations line of a file that never says so).
                ? $"egress.enabled is not set and defaults to false: every connection and every DNS name is denied, and the {count} destination{(count == 1 ? string.Empty : "s")} listed {(count == 1 ? "is" : "are")} not used; add enabled = true under [egress]"
                : $"egress.enabled = false: every connection and every DNS name is denied, and the {count} destination{(count == 1 ? string.Empty : "s")} listed {(count == 1 ? "is" : "are")} not used"),
            _ => (string.Empty, null),
        };
        if (caution is null)
        {
            return null;
        }

        string at = (configuration.GetLocation(key) ?? configuration.GetLocation(key == "egress.enabled" ? "egress.destinations" : "egress.enabled"))?.ToString()
            ?? configuration.SourceName;
        return $"{at}: warning: {caution} (key '{key}')";
    }

    // A file with [[host.enclaves]] whose own [egress] allows something: egress-host decides every stream by the entries'
    // files, so this [egress] decides none, and an enclave given this file would enforce a policy the parent does not (a
    // trial: --check-config said nothing about a full destinations list that was never used). Located at the list.
    private static string? UnusedEgressCaution(EgressConfiguration configuration)
    {
        int mapped = configuration.Host.Enclaves.Count;
        int count = configuration.Egress.Entries.Count;
        if (mapped == 0 || count == 0)
        {
            return null;
        }

        string at = (configuration.GetLocation("egress.destinations") ?? configuration.GetLocation("host.enclaves"))?.ToString() ?? configuration.SourceName;
        return string.Create(
            CultureInfo.InvariantCulture,
            $"{at}: warning: the {count} destination{(count == 1 ? string.Empty : "s")} of this file's [egress] decide no connection: with [[host.enclaves]] ({mapped} entr{(mapped == 1 ? "y" : "ies")}) egress-host decides each enclave's streams by its entry's config file; move them there, or remove them (key 'egress.destinations')");
    }

    // A file copied from an Evervault enclave (it has the identity keys evervault-cli writes: uuid, app_uuid, team_uuid)
    // without egress.ports: Evervault allows egress on port 443 only then, Egress on every port of an entry that names
    // none, so the copy silently allowed more (a trial). Evervault's other keys alone (samples/enclave.toml has version,
    // name, debug) do not make a file a copy.
    private static string? EvervaultPortsCaution(EgressConfiguration configuration)
    {
        EgressSection egress = configuration.Egress;
        string? evervaultKey = EvervaultIdentityKeys
            .Select(key => (Key: key, At: configuration.GetLocation(key)))
            .Where(written => written.At is not null)
            .OrderBy(written => written.At!.Value.Line)
            .FirstOrDefault().Key;
        if (!egress.Enabled || egress.Ports is not null || evervaultKey is null)
        {
            return null;
        }

        int index = -1;
        for (int i = 0; i < egress.Entries.Count && index < 0; i++)
        {
            index = egress.Entries[i].Rule is { Ports: null } ? i : -1;
        }

        if (index < 0)
        {
            return null; // every entry names its ports
        }

        DestinationEntry entry = egress.Entries[index];
        return $"{entry.Location}: warning: this file is an Evervault enclave's (it has Evervault's '{evervaultKey}'), and without egress.ports "
            + $"Evervault allows egress on port 443 only, where Egress allows every port of an entry that names none, such as \"{entry.Text}\": "
            + "add ports = [443] under [egress] for Evervault's behaviour, or give each entry its ports (key 'egress.ports')";
    }

    private static readonly string[] EvervaultIdentityKeys = ["uuid", "app_uuid", "team_uuid"];

    // A listen address other than loopback (0.0.0.0 and [::] take what lo carries, so they are valid; a concrete one only
    // beside a loopback one): where the namespace has other interfaces (a container, a trial on a host), whoever reaches
    // them can use the proxy or the forwarder as this enclave's (a new user's trial: accepted silently).
    private static IEnumerable<string> OffLoopbackListenCautions(EgressConfiguration configuration)
    {
        foreach (var (key, listen, what, example) in new[]
        {
            ("enclave.proxy_listen", configuration.Enclave.ProxyListen, "the proxy", "127.0.0.1:4444"),
            ("enclave.dns_listen", configuration.Enclave.DnsListen, "the DNS forwarder", "127.0.0.1:53"),
        })
        {
            for (int i = 0; i < listen.Count; i++)
            {
                IPAddress address = listen[i].Address;
                bool unspecified = EndPointText.IsUnspecified(address);
                if (IPAddress.IsLoopback(address)
                    || (!unspecified && !listen.Any(other => other.AddressFamily == address.AddressFamily && IPAddress.IsLoopback(other.Address))))
                {
                    continue; // a concrete one with no loopback one of its family is refused where it is used (rules, the proxy)
                }

                string at = (configuration.GetLocation(key, i) ?? configuration.GetLocation(key))?.ToString() ?? configuration.SourceName;
                string where = unspecified ? "on every interface" : "on an address other than loopback";
                yield return $"{at}: warning: {listen[i]} listens {where}: a Nitro enclave has lo only, "
                    + $"but where this runs beside other interfaces (a container, a trial on a host) whoever reaches them can use {what} as this enclave's; "
                    + $"list loopback addresses (\"{example}\") (key '{key}')";
            }
        }
    }

    // vsock://host:PORT is CID 2 (VMADDR_CID_HOST, the hypervisor's), which the kernel's name makes look like the parent
    // instance; a Nitro enclave reaches its parent at CID 3 ("parent"). A warning: elsewhere than Nitro CID 2 may be meant.
    private static string? EnclaveEndpointCaution(EgressConfiguration configuration)
    {
        string text = configuration.Tunnel.EnclaveEndpoint;
        if (!Vsock.VsockEndPoint.TryParse(text, out Vsock.VsockEndPoint? endPoint) || endPoint.Cid != Vsock.VsockEndPoint.HostCid)
        {
            return null;
        }

        const string Key = "tunnel.enclave_endpoint";
        string at = configuration.GetLocation(Key)?.ToString() ?? configuration.SourceName;
        return $"{at}: warning: \"{text}\" is CID 2 (VMADDR_CID_HOST, the hypervisor), not the parent instance: a Nitro enclave reaches its parent at CID 3 (\"vsock://parent:{endPoint.Port}\" or \"vsock://3:{endPoint.Port}\") (key '{Key}')";
    }

    // The parent's wait for its upstreams should end before the enclave's wait for the parent; a warning, not an error
    // (as tunnel.status_timeout_ms against host.connect_timeout_ms is), so that a file that started before still does.
    private static string? DnsTimeoutCaution(EgressConfiguration configuration)
    {
        TimeSpan query = configuration.Enclave.DnsQueryTimeout;
        TimeSpan upstream = configuration.Host.DnsTimeout;
        if (query > upstream)
        {
            return null;
        }

        const string Host = "host.dns_timeout_ms", Enclave = "enclave.dns_query_timeout_ms";
        string key = configuration.GetLocation(Host) is not null ? Host : Enclave;
        string at = configuration.GetLocation(key)?.ToString() ?? configuration.SourceName;
        return string.Create(
            CultureInfo.InvariantCulture,
            $"{at}: warning: {Enclave} ({query.TotalMilliseconds}) is not greater than {Host} ({upstream.TotalMilliseconds}): the enclave answers SERVFAIL before the parent has heard from its upstreams, which it then asks in vain (key '{key}')");
    }

    /// <summary>Parses the configured tunnel endpoint of one side (<c>[tunnel] enclave_endpoint</c> or <c>host_endpoint</c>).</summary>
    /// <param name="configuration">The configuration.</param>
    /// <param name="side">Which side's endpoint: the enclave connects, the host listens.</param>
    /// <returns>The endpoint.</returns>
    /// <exception cref="ConfigurationException">The configured value is malformed (with its location).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="side"/> is neither <see cref="TunnelSide.Enclave"/> nor <see cref="TunnelSide.Host"/>.</exception>
    public static TunnelEndpoint GetTunnelEndpoint(this EgressConfiguration configuration, TunnelSide side)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        if (!Enum.IsDefined(side))
        {
            throw new ArgumentOutOfRangeException(nameof(side), side, "not a TunnelSide: Enclave or Host");
        }

        var (key, value) = side == TunnelSide.Enclave
            ? ("tunnel.enclave_endpoint", configuration.Tunnel.EnclaveEndpoint)
            : ("tunnel.host_endpoint", configuration.Tunnel.HostEndpoint);
        if (!TunnelEndpoint.TryParse(value, out var endpoint, out var error))
        {
            throw configuration.CreateException(key, error);
        }

        if (side == TunnelSide.Enclave && endpoint.EndPoint is VsockEndPoint vsock && (vsock.Cid == VsockEndPoint.AnyCid || vsock.Port == VsockEndPoint.AnyPort))
        {
            // "any" is VMADDR_CID_ANY / VMADDR_PORT_ANY: an address to listen on, not one to dial.
            throw configuration.CreateException(key, $"the enclave dials this endpoint, and \"any\" is only for listening (host_endpoint); write the parent's CID and port, e.g. \"vsock://3:4433\"");
        }

        return endpoint;
    }
}
