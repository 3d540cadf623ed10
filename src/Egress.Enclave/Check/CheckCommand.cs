using System.Globalization;
using Egress.Configuration;
using Egress.Hosting;
using Egress.Policy;
using Egress.Tls;

namespace Egress.Enclave.Check;

/// <summary>
/// <c>egress-enclave check TARGET</c>: explains what the configured policy says about a name or an address. It
/// runs without the forwarder's live cache of learned addresses, so it explains the static rules only, and says so.
/// Exit code 0 when allowed (by report mode too), 1 when denied.
/// </summary>
internal sealed class CheckCommand(EgressConfiguration configuration, EgressPolicy policy, TextWriter output)
{
    public int Run(CheckTarget target)
    {
        int? targetPort = target.Port;
        string port = targetPort is int p ? string.Create(CultureInfo.InvariantCulture, $", port {p}") : string.Empty;
        bool allowed;
        if (target.Note is not null)
        {
            output.WriteLine($"note:    {target.Note}");
        }

        output.WriteLine($"policy:  {HostLog.Describe(configuration.GetPolicyDigest())}; egress-enclave and egress-host log it at start");

        // The endpoint egress-enclave would dial: a file that `run` would reject is rejected here too.
        output.WriteLine($"tunnel:  {configuration.GetTunnelEndpoint(TunnelSide.Enclave)} (tunnel.enclave_endpoint: where egress-enclave opens its streams)");
        if (target.Name is not null)
        {
            var decision = policy.CheckName(target.Name);
            allowed = decision.IsAllowed;
            output.WriteLine($"target:  name {target.Name}{port}");
            output.WriteLine($"dns:     {decision}");
            output.WriteLine(allowed
                ? $"         the DNS forwarder forwards queries for this name to the parent and answers with the parent's answer, less the address records of internal ranges no entry allows, and with no TTL above 1 day"
                : $"         the DNS forwarder answers NXDOMAIN at once (with Extended DNS Error 15, Blocked, when the query has EDNS); nothing is forwarded");
            var onPort = targetPort is int namePort ? policy.CheckNamePort(target.Name, namePort) : null;

            // A "*" entry that allows the port decides a connection to any address outside the internal ranges before
            // the learned addresses are consulted (EgressPolicy.CheckDestination), whatever entry the name has.
            string? allowAllEntry = allowed && targetPort is int allPort ? policy.AllowAllEntry(allPort) : null;
            bool byAllowAll = allowAllEntry is not null;
            if (byAllowAll)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"connect: allowed on port {targetPort} by \"{allowAllEntry}\" (the allow-all entry, as each connection is logged) to the addresses answered for this name; internal-range answers are never learned (DNS rebinding protection) unless an address entry covers them"));
            }
            else if (onPort is { PortAllowed: false } relaxed && targetPort is int relaxedPort && policy.Mode == EgressMode.Report)
            {
                // The hosts' decision for such a connection, in their words: allowed by report mode; enforce would deny: port not allowed by "...".
                var atRunTime = new PolicyDecision(false, DecisionReason.PortNotAllowed, relaxed.Entry).Relaxed();
                output.WriteLine($"connect: {atRunTime} (the entry this name is allowed through); each connection is logged as a would-deny");
                WriteSharedAddressCaveat(policy, relaxedPort);
            }
            else if (onPort is { PortAllowed: false } denied && targetPort is int deniedPort)
            {
                allowed = false;
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"connect: denied on port {deniedPort}: port not allowed by \"{denied.Entry}\" (the entry this name is allowed through)"));
                WriteSharedAddressCaveat(policy, deniedPort);
            }
            else if (decision.WouldDeny)
            {
                output.WriteLine("connect: allowed by report mode to the addresses answered for this name (internal-range answers are never learned); each connection is logged as a would-deny, and enforce mode denies it");
            }
            else
            {
                // Without a port: an entry that limits the ports is said, or "allowed" reads as on every port.
                string through = onPort is { } entry ? string.Create(CultureInfo.InvariantCulture, $" on port {targetPort} (entry \"{entry.Entry}\")")
                    : allowed && policy.PortLimitedEntries(target.Name) is { } limited ? $" only on the ports of {string.Join(", ", limited.Select(text => $"\"{text}\""))}"
                    : string.Empty;
                output.WriteLine(allowed
                    ? $"connect: allowed{through} to the addresses answered for this name, for their TTL (at least {Seconds(configuration.Dns.TtlFloor)}, at most {Seconds(AllowlistCache.Kept(TimeSpan.MaxValue, configuration.Dns.TtlFloor))}) plus {Seconds(configuration.Dns.Grace)} grace, and while a connection through them is open; internal-range answers are never learned (DNS rebinding protection) unless an address entry covers them"
                    : "connect: denied to any address learned for this name (none will be)");
            }

            if (allowed || decision.WouldDeny)
            {
                output.WriteLine($"tls:     {NameServerNameRule(policy, target.Name, decision, onPort, targetPort)}");
            }
        }
        else
        {
            var decision = targetPort is int addressPort ? policy.CheckDestination(new System.Net.IPEndPoint(target.Address!, addressPort)) : policy.CheckAddress(target.Address!);
            allowed = decision.IsAllowed;
            output.WriteLine($"target:  address {target.Address}{port}");
            output.WriteLine($"connect: {decision}");
            if (targetPort is null && decision.IsAllowed && policy.PortLimitedEntries(target.Address!) is { } limited)
            {
                // Without a port: "allowed" would read as on every port (a trial: "2001:db8::/32:443").
                output.WriteLine($"         only on the ports of {string.Join(", ", limited.Select(text => $"\"{text}\""))} (and those of a name it is learned from at run time); give ADDRESS:PORT ([IPv6]:PORT) to check one");
            }

            // In report mode such an address is allowed all the same, as a would-deny (a review: "stays denied" was said).
            string staysDenied = decision.WouldDeny ? "enforce mode denies it at run time whatever is learned (report mode allows it, logged as a would-deny)" : "it stays denied at run time";
            if (decision.Reason == DecisionReason.NeverLearned && !NamesAHost(configuration))
            {
                // Nothing is learned without a name to learn it from: "allowed once learned" would never come true.
                output.WriteLine($"         no entry names a host (or a wildcard), so no DNS answer is learned: {staysDenied}");
            }
            else if (decision.Reason == DecisionReason.NeverLearned && targetPort is int checkedPort && !NamesAHostOnPort(policy, checkedPort))
            {
                // A new user's trial: "api.stripe.com:443" alone, and 198.51.100.1:22 was said to be allowed once learned.
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"         no entry for a host (or a wildcard) allows port {checkedPort}, so no learned address is allowed on it: {staysDenied}"));
            }
            else if (decision.Reason == DecisionReason.NeverLearned)
            {
                output.WriteLine("         at run time it is allowed while the DNS forwarder has learned it from an answer for an allowed name");
                output.WriteLine($"tls:     through a learned address: {ServerNameRule(policy, name: null)}");
            }
            else if (decision.Reason == DecisionReason.PortNotAllowed && targetPort is int sharedPort && !policy.InInternalRange(target.Address!)
                && NameEntriesOnPort(policy, sharedPort) is { Length: > 0 } names)
            {
                // A trial: 198.18.0.10:8080 was said denied by "198.18.0.10:7,5432,25", but connections to it were
                // allowed: the address was also learned from a name allowed on 8080.
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"         but at run time it is allowed on port {sharedPort}{(decision.WouldDeny ? " (without a would-deny)" : string.Empty)} while the DNS forwarder has learned it from an answer for a name allowed on that port ({Listed(names)}): an address learned from an allowed name is allowed on that name's ports, whatever other entry names the address"));
                output.WriteLine($"tls:     through a learned address: {ServerNameRule(policy, name: null)}");
            }
            else if (allowed && policy.TlsServerName != TlsServerNameMode.Off)
            {
                output.WriteLine("tls:     not checked: connections allowed by an address or network entry (or by \"*\") are relayed whatever their ClientHello names (egress.tls_server_name applies to learned addresses)");
            }
        }

        output.WriteLine("note:    explains the static rules of the configuration; this command has no access to the running forwarder's cache of learned addresses, and does not check what egress-host checks only on the parent (the policy files it maps enclaves to, the audit log, metrics_listen, a tcp:// tunnel off loopback): egress-host --check-config does");
        if (configuration.Host.Enclaves.Count > 0)
        {
            // A new user's trial: check answered from this file's [egress], though egress-host decides by the mapped one.
            output.WriteLine($"note:    this file has {configuration.Host.Enclaves.Count} [[host.enclaves]] entr{(configuration.Host.Enclaves.Count == 1 ? "y" : "ies")}: egress-host decides each enclave's streams by its entry's file, so check that file (--config FILE) for what the parent allows; the answer above is this file's [egress], the enclave's side");
        }

        return allowed ? 0 : 1;
    }

    /// <summary>
    /// The server-name line for connections to the addresses answered for <paramref name="name"/> (on
    /// <paramref name="port"/>, or on any port), from the reason the hosts allow such a connection for and
    /// <see cref="ServerNameGate.Applies(EgressPolicy, DecisionReason, bool)"/>, the rule the relay's gate is made by: a
    /// connection allowed by <c>*</c> is not checked, one only by report mode is reported, one through a learned address is.
    /// </summary>
    private static string NameServerNameRule(EgressPolicy policy, string name, PolicyDecision decision, (string Entry, bool PortAllowed)? onPort, int? port)
    {
        const string ByAllowAll = "connections allowed by \"*\" are relayed whatever their ClientHello names (egress.tls_server_name applies to connections allowed through a learned address, and \"*\" decides before learned addresses are consulted)";
        if (port is int onePort)
        {
            // The reason CheckDestination gives a connection on this port to an address learned from the name only.
            DecisionReason reason = policy.AllowAllAllows(onePort) ? DecisionReason.AllowAll
                : decision.WouldDeny ? decision.Reason
                : onPort is { PortAllowed: false } ? DecisionReason.PortNotAllowed
                : DecisionReason.Learned;
            return ServerNameGate.Applies(policy, reason) || policy.TlsServerName == TlsServerNameMode.Off ? ServerNameRule(policy, name)
                : reason == DecisionReason.AllowAll ? string.Create(CultureInfo.InvariantCulture, $"not checked on port {onePort}: {ByAllowAll}")
                : ReportedInReportMode(policy);
        }

        if (policy.TlsServerName == TlsServerNameMode.Off)
        {
            return ServerNameRule(policy, name);
        }

        if (decision.Reason == DecisionReason.AllowAll || policy.Destinations.Any(entry => entry.Kind == DestinationRuleKind.AllowAll && entry.Ports is null))
        {
            // Allowed only through "*", or "*" allows every port: no connection to its addresses goes through a learned address.
            return $"not checked: {ByAllowAll}";
        }

        string rule = decision.WouldDeny ? ReportedInReportMode(policy) : ServerNameRule(policy, name);
        string[] allowAll = [.. policy.Destinations.Where(entry => entry.Kind == DestinationRuleKind.AllowAll).Select(entry => $"\"{entry.Text}\"")];
        return allowAll.Length == 0 ? rule : $"on the ports of {string.Join(", ", allowAll)}, not checked: {ByAllowAll}; on other ports: {rule}";
    }

    /// <summary>The server-name line of a connection allowed only by report mode, which the hosts read and report but do
    /// not refuse (<see cref="ServerNameGate.Applies(EgressPolicy, DecisionReason, bool)"/>), in the words of the mode
    /// (a review: under "if-present" a ClientHello without a server name is no would-refuse).</summary>
    private static string ReportedInReportMode(EgressPolicy policy) =>
        "reported, not refused: a connection allowed only by report mode (a would-deny) is relayed whatever its ClientHello names; a ClientHello "
        + (policy.TlsServerName == TlsServerNameMode.Require ? "without a server name, with ECH, or naming" : "with ECH, or naming")
        + " a name the address was not learned from is logged as a would-refuse line, and report-to-allowlist says that only an entry for its address would let it through in enforce mode";

    /// <summary>The server-name rule (<c>egress.tls_server_name</c>) for connections through addresses learned from
    /// <paramref name="name"/> (null: from whichever allowed name), in the words the hosts' refusals use.</summary>
    private static string ServerNameRule(EgressPolicy policy, string? name)
    {
        string learnedFrom = name is null ? "a name the address was learned from" : $"{name} (or another allowed name the same address was learned from)";
        string reportSuffix = policy.Mode == EgressMode.Report ? "; in report mode a refusal is only logged (would-refuse)" : string.Empty;
        return policy.TlsServerName switch
        {
            TlsServerNameMode.Require => $"a TLS ClientHello must name {learnedFrom}, allowed on the connection's port; one without a server name, with encrypted_client_hello (ECH), malformed or over 16 KiB is refused; plain-text protocols are not checked (egress.tls_server_name = \"require\"){reportSuffix}",
            TlsServerNameMode.IfPresent => $"a TLS ClientHello that carries a server name must name {learnedFrom}, allowed on the connection's port; one without a server name passes; ECH, malformed or over 16 KiB is refused; plain-text protocols are not checked (egress.tls_server_name = \"if-present\"){reportSuffix}",
            _ => "not checked: the first client bytes are relayed unread (egress.tls_server_name = \"off\"); a connection to an allowed address may name any server in its ClientHello",
        };
    }

    /// <summary>
    /// For <c>check NAME:PORT</c> denied on its port: an address learned from the name is allowed on the port at run
    /// time when the same address is also learned from another name whose entry allows the port (an address shared by
    /// two names is allowed on the ports of both), or when an address or network entry covers it on the port.
    /// </summary>
    private void WriteSharedAddressCaveat(EgressPolicy policy, int port)
    {
        string[] names = NameEntriesOnPort(policy, port);
        bool byAddress = policy.Destinations.Any(rule => rule.Kind is DestinationRuleKind.Address or DestinationRuleKind.Network && PortSet.Allows(rule.Ports, port));
        if (names.Length == 0 && !byAddress)
        {
            return;
        }

        string how = names.Length == 0 ? "when an address or network entry allows that address on that port"
            : string.Create(CultureInfo.InvariantCulture, $"when the DNS forwarder has also learned that address from an answer for another name allowed on port {port} ({Listed(names)}): an address shared by two names is allowed on the ports of both{(byAddress ? "; or when an address or network entry allows that address on that port" : string.Empty)}");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"         but a connection on port {port} to one of its addresses is allowed at run time {how}"));
    }

    /// <summary>The texts of the host and wildcard entries that allow <paramref name="port"/>.</summary>
    private static string[] NameEntriesOnPort(EgressPolicy policy, int port) =>
        [.. policy.Destinations.Where(rule => rule.Kind is DestinationRuleKind.ExactHost or DestinationRuleKind.WildcardSubdomain && PortSet.Allows(rule.Ports, port)).Select(rule => rule.Text)];

    /// <summary>At most 4 entries, quoted, then how many more.</summary>
    private static string Listed(string[] entries) =>
        string.Join(", ", entries.Take(4).Select(text => $"\"{text}\""))
        + (entries.Length > 4 ? string.Create(CultureInfo.InvariantCulture, $" and {entries.Length - 4} more") : string.Empty);

    private static string Seconds(TimeSpan value) => string.Create(CultureInfo.InvariantCulture, $"{value.TotalSeconds:0.###} s");

    private static bool NamesAHostOnPort(EgressPolicy policy, int port) =>
        policy.Destinations.Any(rule => rule.Kind is DestinationRuleKind.ExactHost or DestinationRuleKind.WildcardSubdomain
            && (rule.Ports is null || rule.Ports.Contains(port)));

    private static bool NamesAHost(EgressConfiguration configuration) =>
        configuration.Egress.Entries.Any(entry => entry.Rule?.Kind is DestinationRuleKind.ExactHost or DestinationRuleKind.WildcardSubdomain);
}
