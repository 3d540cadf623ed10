using Egress.Diagnostics;
using Egress.Gateway;
using Egress.Policy;
using Egress.Proxy;
using Egress.Relay;

namespace Egress.Audit;

/// <summary>Builds each host's <see cref="AuditRecord"/> from the result its handler logs and counts: one rule for what a
/// record says, next to the log line that says the same.</summary>
internal static class AuditRecords
{
    /// <summary>The enclave's record of a connection that reached a decision; null for one that never did (not redirected).</summary>
    public static AuditRecord? ForEnclave(in ProxyConnectionResult result, DateTimeOffset now)
    {
        if (result.Outcome == ConnectionOutcome.NotRedirected || result.Destination is null)
        {
            return null;
        }

        RelayResult? relay = result.Relay;
        PolicyDecision decision = result.Decision;
        return new AuditRecord
        {
            Time = now,
            Side = "enclave",
            ConnectionId = result.ConnectionId == 0 ? null : result.ConnectionId,
            Destination = result.Destination,
            Name = ProxyConnectionHandler.HostHintFor(decision),
            Entry = decision.Subject,
            Decision = DecisionText(decision),
            Reason = MetricTag.Of(decision.Reason),
            DecisionText = decision.ToString(),
            ServerName = result.ServerName,
            Outcome = result.ServerNameRefusal is not null && relay?.FirstCause == RelayShutdownCause.Refused ? "refused" : result.MetricOutcome,
            Detail = result.ServerNameRefusal ?? (result.Outcome == ConnectionOutcome.Relayed ? null : FailureText(result)),
            BytesOut = relay?.BytesAToB ?? 0,
            BytesIn = relay?.BytesBToA ?? 0,
            Duration = relay?.Duration ?? TimeSpan.Zero,
            CloseCause = relay is null ? null : CloseText(relay),
        };
    }

    /// <summary>The parent's record of a TCP stream that reached a decision (relayed, denied, or allowed and failed to
    /// connect); null for any other stream (DNS, a bad or missing request, a refusal for load).</summary>
    public static AuditRecord? ForParent(in GatewayStreamResult result, uint? cid, DateTimeOffset now)
    {
        if (result.ConnectionTags is not { } tags || result.Destination is null)
        {
            return null;
        }

        string outcome = tags.Outcome;

        RelayResult? relay = result.Relay;
        PolicyDecision decision = result.Decision;
        return new AuditRecord
        {
            Time = now,
            Side = "parent",
            ConnectionId = result.Request.ConnectionId == 0 ? null : result.Request.ConnectionId,
            Cid = cid,
            Destination = result.Destination,
            Name = decision.LearnedName, // from the parent's own answers: the hint is the enclave's word (a red-team trial wrote any name into it)
            HostHint = result.Request.HostHint,
            Entry = decision.Subject,
            Decision = DecisionText(decision),
            Reason = MetricTag.Of(decision.Reason),
            DecisionText = decision.ToString(),
            ServerName = result.ServerName,
            Outcome = result.ServerNameRefusal is not null && relay?.FirstCause == RelayShutdownCause.Refused ? "refused" : outcome,
            Detail = result.ServerNameRefusal ?? (result.Outcome == StreamOutcome.ConnectFailed ? $"{result.Status}: {result.Detail}" : null),
            BytesOut = relay?.BytesAToB ?? 0,
            BytesIn = relay?.BytesBToA ?? 0,
            Duration = relay?.Duration ?? TimeSpan.Zero,
            CloseCause = relay is null ? null : CloseText(relay),
        };
    }

    /// <summary>The parent's record of one record of an enclave's denial report: what the enclave says it denied. Its
    /// reason and subject are the enclave's words, untrusted (the codec bounds them: a snake_case token, printable ASCII).</summary>
    /// <param name="record">The report's record.</param>
    /// <param name="cid">The enclave's CID (over VSOCK); null otherwise.</param>
    /// <param name="what">The record's kind in words, as the log line says it (<see cref="DenialReportReceiver.What"/>).</param>
    /// <param name="now">When the parent read it.</param>
    public static AuditRecord ForDenialReport(in Tunnel.DenialRecord record, uint? cid, string what, DateTimeOffset now) => new()
    {
        Time = now,
        Side = "parent",
        Cid = cid,
        Decision = "denied",
        Reason = record.Reason,
        DecisionText = $"the enclave denied {record.Count} {what} {(record.Subject.Length > 0 ? record.Subject : DenialReportReceiver.NotNamed)} in the last {record.Seconds} s (its denial report)",
        Outcome = "denied_in_enclave",
        DenialReport = record,
    };

    /// <summary><c>allowed</c>, <c>denied</c>, or <c>allowed_by_report_mode</c> (enforce would have denied).</summary>
    private static string DecisionText(PolicyDecision decision) =>
        !decision.IsAllowed ? "denied" : decision.WouldDeny ? "allowed_by_report_mode" : "allowed";

    private static string CloseText(RelayResult relay) =>
        relay.Framed is { } ends ? $"{relay.FirstCause} (END {ends})" : relay.FirstCause.ToString();

    private static string FailureText(in ProxyConnectionResult result) => result.Outcome switch
    {
        ConnectionOutcome.ParentRefused => $"parent: {result.ParentStatus}: {result.Detail}",
        ConnectionOutcome.BadParentResponse => $"bad parent response: {result.ReadResult}",
        _ => result.Detail is { } detail ? $"{result.Outcome}: {detail}" : result.Outcome.ToString(),
    };
}
