using System.Net;
using Egress.Diagnostics;
using Egress.Interception;
using Egress.Policy;
using Egress.Relay;
using Egress.Tunnel;

namespace Egress.Proxy;

/// <summary>
/// What <see cref="ProxyConnectionHandler"/> returns for one connection: the outcome and what it carries (the
/// destination, the policy decision, the parent's status or what failed, the relay's totals). The metric tags, the
/// tunnel error kind and reset-versus-close are derived here, in one place; the log line is chosen by
/// <see cref="ProxyConnectionHandler"/>'s <c>Complete</c> from the same outcome.
/// </summary>
internal sealed record ProxyConnectionResult
{
    private ProxyConnectionResult(ConnectionOutcome outcome) => Outcome = outcome;

    /// <summary>Gets what happened.</summary>
    public ConnectionOutcome Outcome { get; }

    /// <summary>Gets the original destination (null when not redirected).</summary>
    public IPEndPoint? Destination { get; private init; }

    /// <summary>Gets the enclave's policy decision (<see cref="ConnectionOutcome.Denied"/> and after an allow).</summary>
    public PolicyDecision Decision { get; private init; }

    /// <summary>Gets why the connection was not redirected (<see cref="ConnectionOutcome.NotRedirected"/>).</summary>
    public OriginalDestinationStatus RedirectStatus { get; private init; }

    /// <summary>Gets the parent's status (<see cref="ConnectionOutcome.ParentRefused"/>).</summary>
    public TunnelStatus ParentStatus { get; private init; }

    /// <summary>Gets how the parent's answer failed to decode (<see cref="ConnectionOutcome.BadParentResponse"/>).</summary>
    public TunnelReadResult ReadResult { get; private init; }

    /// <summary>Gets the detail: the parent's detail text, the socket error, or why not redirected.</summary>
    public string? Detail { get; private init; }

    /// <summary>Gets the relay's totals (<see cref="ConnectionOutcome.Relayed"/>).</summary>
    public RelayResult? Relay { get; private init; }

    /// <summary>Gets the tunnel v2 connection id the parent logs too; 0 when there is none (no tunnel stream, or v1).</summary>
    public ulong ConnectionId { get; private init; }

    /// <summary>Gets the server name of the application's TLS ClientHello, when the server-name check read one.</summary>
    public string? ServerName { get; private init; }

    /// <summary>Gets why the server-name check refused the connection (or would have, in report mode); null when it did not.</summary>
    public string? ServerNameRefusal { get; private init; }

    /// <summary>Gets the <c>egress.outcome</c> tag of <c>egress.connections</c>: allowed, denied or failed. A denial
    /// by either side's policy is denied.</summary>
    public string MetricOutcome => Outcome switch
    {
        ConnectionOutcome.Relayed => RelayedTags(Decision).Outcome,
        ConnectionOutcome.Denied => "denied",
        ConnectionOutcome.ParentRefused when ParentStatus == TunnelStatus.DeniedByPolicy => "denied",
        _ => "failed",
    };

    /// <summary>Gets the <c>egress.reason</c> tag: the policy reason for a decision, the parent's status for a refusal,
    /// else the outcome itself; all snake_case.</summary>
    public string MetricReason => Outcome switch
    {
        ConnectionOutcome.Relayed => RelayedTags(Decision).Reason,
        ConnectionOutcome.Denied => MetricTag.Of(Decision.Reason),
        ConnectionOutcome.ParentRefused => MetricTag.Of(ParentStatus),
        _ => MetricTag.Of(Outcome),
    };

    /// <summary>The <see cref="MetricOutcome"/> and <see cref="MetricReason"/> of a relayed connection allowed by
    /// <paramref name="decision"/>, counted when its relay starts (before its result exists).</summary>
    public static (string Outcome, string Reason) RelayedTags(PolicyDecision decision) => ("allowed", MetricTag.Of(decision.Reason));

    /// <summary>Gets the <c>egress.error</c> tag of <c>egress.tunnel.errors</c> when the tunnel stream failed; null
    /// when the outcome is not a tunnel failure.</summary>
    public string? TunnelError => Outcome switch
    {
        ConnectionOutcome.TunnelUnavailable => "unavailable",
        ConnectionOutcome.TunnelConnectTimeout => "connect_timeout",
        ConnectionOutcome.StatusTimeout => "status_timeout",
        ConnectionOutcome.BadParentResponse => "bad_response",
        _ => null,
    };

    /// <summary>Gets whether the application's socket is reset (RST, so the application fails fast) rather than
    /// closed: every outcome but a relay that ran.</summary>
    public bool ResetsClient => Outcome != ConnectionOutcome.Relayed;

    public static ProxyConnectionResult NotRedirected(OriginalDestinationStatus status, string? detail) =>
        new(ConnectionOutcome.NotRedirected) { RedirectStatus = status, Detail = detail };

    /// <summary>This result with the tunnel v2 connection id (when it has none yet).</summary>
    public ProxyConnectionResult WithConnectionId(ulong connectionId) => ConnectionId != 0 ? this : this with { ConnectionId = connectionId };

    /// <summary>This result with the enclave's decision that let it go on to the tunnel, for an outcome after the
    /// decision that carries none (the parent refused, the tunnel failed); a relayed or denied result keeps its own.</summary>
    public ProxyConnectionResult WithAllowingDecision(PolicyDecision decision) =>
        Outcome is ConnectionOutcome.Relayed or ConnectionOutcome.Denied or ConnectionOutcome.NotRedirected ? this : this with { Decision = decision };

    /// <summary>This result with what the server-name check read and decided.</summary>
    public ProxyConnectionResult WithServerName(string? serverName, string? refusal) => this with { ServerName = serverName, ServerNameRefusal = refusal };

    public static ProxyConnectionResult Denied(IPEndPoint destination, PolicyDecision decision) =>
        new(ConnectionOutcome.Denied) { Destination = destination, Decision = decision };

    /// <summary>A relay that ran, with everything its line and record carry, in one result (no copies per connection).</summary>
    public static ProxyConnectionResult Relayed(
        IPEndPoint destination, PolicyDecision decision, RelayResult relay, ulong connectionId, string? serverName, string? serverNameRefusal) =>
        new(ConnectionOutcome.Relayed)
        {
            Destination = destination, Decision = decision, Relay = relay, ConnectionId = connectionId, ServerName = serverName, ServerNameRefusal = serverNameRefusal,
        };

    public static ProxyConnectionResult ParentRefused(IPEndPoint destination, TunnelStatus status, string? detail) =>
        new(ConnectionOutcome.ParentRefused) { Destination = destination, ParentStatus = status, Detail = detail };

    public static ProxyConnectionResult BadParentResponse(IPEndPoint destination, TunnelReadResult result) =>
        new(ConnectionOutcome.BadParentResponse) { Destination = destination, ReadResult = result };

    public static ProxyConnectionResult Failed(ConnectionOutcome outcome, IPEndPoint destination, string? detail = null) =>
        new(outcome) { Destination = destination, Detail = detail };
}
