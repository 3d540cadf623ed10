using System.Net;
using Egress.Diagnostics;
using Egress.Dns.Wire;
using Egress.Policy;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Egress.Dns.Forwarder;

/// <summary>
/// What the enclave forwarder does with one query, whichever transport it came on: an opcode other than QUERY gets
/// NOTIMP, malformed gets FORMERR (or is dropped when it cannot be answered), an EDNS version other than 0 gets
/// BADVERS, a name outside the allowlist gets NXDOMAIN (with an Extended DNS Error when the query has EDNS) without
/// anything being forwarded (in report mode it is forwarded as if allowed, after a would-deny line), an allowed name goes to the parent (its question and a few
/// flags only: <see cref="DnsForwarding.Minimize"/>) and its answer comes back verbatim (only the ID was
/// rewritten on the wire and restored), after its addresses were learned, less the A/AAAA records of internal-range
/// addresses the policy refuses (<see cref="DnsAddressRemoval"/>), and with no TTL above <see cref="MaxAnswerTtl"/>
/// (<see cref="DnsTtlCap"/>). A UDP answer larger than the client
/// accepts is cut to the whole records that fit, with TC=1, so the client may retry over TCP. Every query ends in
/// one <see cref="DnsQueryResult"/>, logged and counted by <see cref="Complete"/>. Forwarded queries are admitted by
/// <paramref name="admission"/>: beyond its limit a query is answered SERVFAIL at once (with an Extended DNS Error).
/// A query in flight is not cancelled when its client goes away: the tunnel stream's query timeout ends it.
/// </summary>
internal sealed class DnsQueryHandler(
    EgressPolicy policy, DnsTunnelPool pool, DnsQueryAdmission admission, EgressMetrics? metrics, ILogger logger, TimeProvider time, Denials.DenialTally? denials = null) : IDnsAnswerer
{
    /// <summary>The highest TTL an app reads in a forwarded answer, in seconds: how long a learned address is kept.</summary>
    internal static readonly uint MaxAnswerTtl = (uint)AllowlistCache.MaxTtl.TotalSeconds;

    [ThreadStatic]
    private static HashSet<UInt128>? t_refused;

    private readonly LogRateLimit _overloadLines = new(time, LogRateLimit.DefaultInterval, logger, 321);
    private readonly LogRateLimit _malformedLines = new(time, LogRateLimit.DefaultInterval, logger, 330);
    private readonly LogRateLimit _failedLines = new(time, LogRateLimit.DefaultInterval, logger, 305, LogRateLimit.FailureLinesPerInterval);

    /// <summary>Gets the admission of forwarded queries.</summary>
    public DnsQueryAdmission Admission => admission;

    /// <inheritdoc />
    public async ValueTask<int> AnswerAsync(Memory<byte> query, DnsAnswerBuffer response, bool udp, int clientInFlight, CancellationToken cancellationToken)
    {
        var result = await ResolveAsync(query, response, udp, clientInFlight).ConfigureAwait(false);
        Complete(result);
        return result.Length;
    }

    /// <inheritdoc />
    public int AnswerOverloaded(ReadOnlySpan<byte> query, Span<byte> response, string reason)
    {
        var result = DnsQueryResult.Answer(DnsQueryOutcome.Overloaded, query, response, default, reason);
        Complete(result);
        return result.Length;
    }

    private async ValueTask<DnsQueryResult> ResolveAsync(Memory<byte> query, DnsAnswerBuffer response, bool udp, int clientInFlight)
    {
        if (Screen(query.Span, response.GetSpan(DnsMessage.MaxErrorResponseLength), out DnsQuestion question, out int questionEnd, out PolicyDecision decision) is { } screened)
        {
            return screened;
        }

        // From here every result carries the decision that let the question through: report mode's would-deny line is
        // logged with the answer (Complete), so it can say what the name was answered.

        // Only the question and a few flags go on (DnsForwarding.Minimize); the answer is checked against this form,
        // which keeps the ID, the question and the client's UDP payload size.
        query = query[..DnsForwarding.Minimize(query.Span, questionEnd)];
        if (!admission.TryEnter(clientInFlight, udp, out string? refused))
        {
            return DnsQueryResult.Answer(DnsQueryOutcome.Overloaded, query.Span, response.GetSpan(DnsMessage.MaxErrorResponseLength), question, refused) with { Decision = decision };
        }

        DnsExchangeStatus status;
        int length;
        try
        {
            (status, length) = await pool.ExchangeAsync(query, response).ConfigureAwait(false);
        }
        finally
        {
            admission.Exit();
        }

        if (status != DnsExchangeStatus.Answered)
        {
            // No answer in time: no reachable authority; the tunnel stream failed: a network error (the app's resolver
            // can show which, RFC 8914). A stop says neither.
            ushort? infoCode = status switch
            {
                DnsExchangeStatus.TimedOut => DnsEdns.InfoCodeNoReachableAuthority,
                DnsExchangeStatus.StreamFailed => DnsEdns.InfoCodeNetworkError,
                _ => null,
            };
            return DnsQueryResult.Answer(
                DnsQueryOutcome.UpstreamFailed, query.Span, response.GetSpan(DnsMessage.MaxErrorResponseLength), question, DnsExchangeStatusText.Of(status), infoCode) with { Decision = decision };
        }

        if (!DnsForwarding.IsAnswerTo(query.Span, response.Written(length).Span))
        {
            return DnsQueryResult.Answer(
                DnsQueryOutcome.UpstreamFailed, query.Span, response.GetSpan(DnsMessage.MaxErrorResponseLength), question, "the parent's answer does not match the question") with { Decision = decision };
        }

        // The buffer already holds the answer (GetSpan keeps it: no larger array is needed). A truncated answer is
        // written over it only when the answer exceeds the client's UDP limit (at least 512 bytes), so it fits, and
        // so does the SERVFAIL written when truncation fails.
        Span<byte> answered = response.GetSpan(length);

        return Deliver(query.Span, answered[..length], answered, question, questionEnd, udp) with { Decision = decision };
    }

    private DnsQueryResult? Screen(ReadOnlySpan<byte> query, Span<byte> response, out DnsQuestion question, out int questionEnd, out PolicyDecision decision)
    {
        if (DnsScreening.Screen(query, response, out question, out questionEnd) is { } screened)
        {
            decision = default;
            return screened;
        }

        decision = policy.CheckName(question.Name);
        return decision.IsAllowed
            ? null
            : DnsQueryResult.Denied(query, response, question, decision);
    }

    private DnsQueryResult Deliver(ReadOnlySpan<byte> query, ReadOnlySpan<byte> answer, Span<byte> response, DnsQuestion question, int questionEnd, bool udp)
    {
        HashSet<UInt128> refused = t_refused ??= [];
        refused.Clear();
        if (DnsAnswerLearner.RefuseInternal(policy, question.Name, answer, logger, refused) is { } refusal)
        {
            // Fail closed: addresses nobody could check must not reach the app (a stub resolver may read what this
            // could not, and find 127.0.0.1 there), and nothing is learned from it. The reason is logged with the
            // SERVFAIL (event 305).
            refused.Clear();
            return DnsQueryResult.Answer(DnsQueryOutcome.UpstreamFailed, query, response, question, refusal, DnsEdns.InfoCodeBlocked, DnsEdns.InternalAddressesExtraText);
        }

        DnsAnswerLearner.Learn(policy, question.Name, answer, logger, refused);

        if (refused.Count > 0)
        {
            // An address the policy refuses would be relayed nowhere: the app, connected to the proxy, would be reset
            // instead of failing to connect and trying the next address. Such records are taken out of the answer.
            int length = DnsAddressRemoval.Remove(response[..answer.Length], refused, out int removed);
            refused.Clear();

            // Fail closed: passed on whole, the answer would hand the app addresses the policy refuses — 127.0.0.1
            // among them, which the redirect rules leave alone, so a rebinding answer would reach the enclave's own
            // listeners. So is an answer the removal left an internal address in (read again: the removal and the
            // check must agree, and if they ever do not, the app gets SERVFAIL, not the address). The app gets SERVFAIL
            // (EDE Blocked) instead, and the log says why.
            if (removed == 0
                || DnsAnswerLearner.RefuseInternal(policy, question.Name, response[..length], NullLogger.Instance, refused) is not null
                || refused.Count > 0)
            {
                refused.Clear();
                DnsLog.InternalAddressesRefusedAnswer(logger, question.LogName, DnsTypeName.Of(question.Type));
                return DnsQueryResult.Answer(
                    DnsQueryOutcome.UpstreamFailed, query, response, question, "the answer holds internal-range addresses and could not be rewritten without them",
                    DnsEdns.InfoCodeBlocked, DnsEdns.InternalAddressesExtraText);
            }

            DnsLog.InternalAddressesRemoved(logger, question.LogName, DnsTypeName.Of(question.Type), removed);
            answer = response[..length];
        }

        // The enclave and the parent keep a learned address for at most a day (AllowlistCache.MaxTtl); an app that kept
        // it longer would be denied it. So no TTL the app reads is above that (the answer is response's first bytes).
        DnsTtlCap.Apply(response[..answer.Length], MaxAnswerTtl);
        DnsLog.Answered(logger, question.LogName, DnsTypeName.Of(question.Type), DnsForwarding.ResponseCode(answer), answer.Length);
        int limit = udp ? DnsForwarding.ClientUdpLimit(query, questionEnd) : DnsTcpFraming.MaxMessageLength;
        if (answer.Length <= limit)
        {
            return new DnsQueryResult(DnsQueryOutcome.Forwarded, answer.Length, question, string.Empty) { ForwardedCode = DnsForwarding.ResponseCode(answer) };
        }

        DnsLog.TruncatedForClient(logger, question.LogName, answer.Length, limit);
        int truncated = DnsForwarding.WriteTruncated(query, questionEnd, answer, limit, response);
        return new DnsQueryResult(DnsQueryOutcome.Truncated, truncated >= 0 ? truncated : DnsMessage.WriteServFail(query, response), question, string.Empty)
        {
            ForwardedCode = truncated >= 0 ? DnsForwarding.ResponseCode(answer) : null,
        };
    }

    /// <summary>The one place a query's outcome is logged and counted.</summary>
    private void Complete(DnsQueryResult result)
    {
        var question = result.Question;
        if (result.Decision.WouldDeny)
        {
            WouldDenyLog.Question(logger, metrics, question.Name, DnsTypeName.Of(question.Type), result.Decision, result.Action);
        }

        switch (result.Outcome)
        {
            case DnsQueryOutcome.DeniedName:
                DnsLog.Denied(logger, question.LogName, DnsTypeName.Of(question.Type), result.Decision.WithoutDeniedPrefix);
                denials?.DnsQuestion(question.LogName, DnsTypeName.Of(question.Type), result.Decision.Reason);
                break;
            case DnsQueryOutcome.UpstreamFailed when _failedLines.TryEnter(out long failedBack):
                // One at a time in normal running; every query while the parent is down: the first ten a second, counted.
                DnsLog.QueryFailed(logger, question.LogName, DnsTypeName.Of(question.Type), result.Reason, new HeldBackLines(failedBack));

                break;
            case DnsQueryOutcome.Overloaded when _overloadLines.TryEnter(out long suppressed):
                DnsLog.QueryOverloaded(logger, result.Reason, suppressed);
                break;
            case DnsQueryOutcome.FormErr:
                // Every other DNS decision is a line at Information; a client sending malformed queries in a loop gets
                // one a second, with the count.
                if (_malformedLines.TryEnter(out long heldBack))
                {
                    DnsLog.MalformedQuery(logger, result.Reason, result.Action, heldBack);
                }

                break;
            case DnsQueryOutcome.NotImp or DnsQueryOutcome.BadVers or DnsQueryOutcome.Dropped:
                DnsLog.NotForwarded(logger, result.Reason, result.Action);
                break;
        }

        metrics?.DnsQuery(result.MetricTag);
    }
}
