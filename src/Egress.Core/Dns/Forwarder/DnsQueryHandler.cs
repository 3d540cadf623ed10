using Egress.Diagnostics;
using Egress.Dns.Wire;
using Egress.Policy;
using Microsoft.Extensions.Logging;

namespace Egress.Dns.Forwarder;

/// <summary>
/// What the enclave forwarder does with one query, whichever transport it came on: an opcode other than QUERY gets
/// NOTIMP, malformed gets FORMERR (or is dropped when it cannot be answered), an EDNS version other than 0 gets
/// BADVERS, a name outside the allowlist gets NXDOMAIN (with an Extended DNS Error when the query has EDNS) without
/// anything being forwarded, an allowed name goes to the parent and its answer comes back verbatim (only the ID was
/// rewritten on the wire and restored), after its addresses were learned. A UDP answer larger than the client
/// accepts is cut to the whole records that fit, with TC=1, so the client may retry over TCP.
/// </summary>
internal sealed class DnsQueryHandler(EgressPolicy policy, DnsTunnelPool pool, EgressMetrics? metrics, ILogger logger) : IDnsAnswerer
{
    private const int Drop = -1;

    private const int Forward = DnsScreening.Forward;

    /// <inheritdoc />
    public async ValueTask<int> AnswerAsync(Memory<byte> query, Memory<byte> response, bool udp)
    {
        int local = Screen(query.Span, response.Span, out DnsQuestion question, out int questionEnd);
        if (local != Forward)
        {
            return local;
        }

        var (status, length) = await pool.ExchangeAsync(query, response).ConfigureAwait(false);
        if (status != DnsExchangeStatus.Answered)
        {
            DnsLog.QueryFailed(logger, question.Name, DnsTypeName.Of(question.Type), status.ToString());
            metrics?.DnsQuery("servfail");
            return DnsMessage.WriteServFail(query.Span, response.Span);
        }

        if (!DnsForwarding.IsAnswerTo(query.Span, response.Span[..length]))
        {
            DnsLog.QueryFailed(logger, question.Name, DnsTypeName.Of(question.Type), "the parent's answer does not match the question");
            metrics?.DnsQuery("servfail");
            return DnsMessage.WriteServFail(query.Span, response.Span);
        }

        return Deliver(query.Span, response.Span[..length], response.Span, question, questionEnd, udp);
    }

    private int Screen(ReadOnlySpan<byte> query, Span<byte> response, out DnsQuestion question, out int questionEnd)
    {
        int length = DnsScreening.Screen(query, response, out question, out questionEnd, out string outcome, out string reason);
        if (length != DnsScreening.Forward)
        {
            DnsLog.NotForwarded(logger, reason, length < 0 ? "dropped" : "answered " + outcome.ToUpperInvariant());
            metrics?.DnsQuery(length < 0 ? "dropped" : outcome);
            return length < 0 ? Drop : length;
        }

        PolicyDecision decision = policy.CheckName(question.Name);
        if (!decision.IsAllowed)
        {
            DnsLog.Denied(logger, question.Name, DnsTypeName.Of(question.Type), decision);
            metrics?.DnsQuery("denied");
            return DnsMessage.WriteDenied(query, response);
        }

        return Forward;
    }

    private int Deliver(ReadOnlySpan<byte> query, ReadOnlySpan<byte> answer, Span<byte> response, DnsQuestion question, int questionEnd, bool udp)
    {
        DnsAnswerLearner.Learn(policy, question.Name, answer, logger);
        DnsLog.Answered(logger, question.Name, DnsTypeName.Of(question.Type), DnsForwarding.ResponseCode(answer), answer.Length);
        int limit = udp ? DnsForwarding.ClientUdpLimit(query, questionEnd) : DnsTcpFraming.MaxMessageLength;
        if (answer.Length <= limit)
        {
            metrics?.DnsQuery("forwarded");
            return answer.Length;
        }

        DnsLog.TruncatedForClient(logger, question.Name, answer.Length, limit);
        metrics?.DnsQuery("truncated");
        int truncated = DnsForwarding.WriteTruncated(query, questionEnd, answer, limit, response);
        return truncated >= 0 ? truncated : DnsMessage.WriteServFail(query, response);
    }
}
