using Egress.Diagnostics;
using Egress.Dns.Wire;
using Egress.Gateway;
using Egress.Policy;
using Microsoft.Extensions.Logging;

namespace Egress.Dns.Upstream;

/// <summary>
/// The parent's answer to each query on a tunnel DNS stream: the name is checked again with the parent's own
/// policy (NXDOMAIN when denied, as in the enclave: a compromised enclave forwarder gains nothing), the query goes to the upstream
/// resolvers, and the answered addresses are learned into the parent's own cache so its connect check allows
/// them. What goes to the upstreams is the query's question and a few flags only (<see cref="DnsForwarding.Minimize"/>:
/// a compromised enclave's forwarder, or code that speaks the tunnel protocol itself, carries nothing else to them).
/// SERVFAIL when no upstream answers in time, with the reason logged. Every query ends in one
/// <see cref="DnsQueryResult"/>, logged and counted by <see cref="Complete"/>.
/// </summary>
/// <param name="policy">The parent's allowlist.</param>
/// <param name="upstreams">The resolvers.</param>
/// <param name="metrics">Where each query's outcome is counted; null for nowhere.</param>
/// <param name="logger">Where each query's outcome is logged.</param>
/// <param name="overloadLines">The rate limit of the "not forwarded for load" line, shared by the gateway's streams.</param>
/// <param name="failedLines">The rate limit of the SERVFAIL line (event 256), shared by the gateway's streams.</param>
/// <param name="deniedLines">The rate limit of the denied-name line (event 254), shared by the gateway's streams: the
/// enclave's forwarder denies such names itself, so a flood of them comes from code that speaks the tunnel protocol
/// (a red-team trial sent one on each of 25 streams a second).</param>
/// <param name="slot">The stream's place among the gateway's DNS streams, told of each query (a stream whose queries go
/// upstream keeps its place at the limit); null for none.</param>
internal sealed class UpstreamDnsAnswerer(
    EgressPolicy policy, DnsUpstreamClient upstreams, EgressMetrics? metrics, ILogger logger, LogRateLimit overloadLines, LogRateLimit failedLines,
    LogRateLimit deniedLines, DnsStreamSlot? slot = null) : IDnsAnswerer
{
    /// <inheritdoc />
    /// <remarks>A query whose stream was reset or timed out (<paramref name="cancellationToken"/>) stops at once: its
    /// upstream exchange is cancelled, and it is neither logged nor counted (nobody waits for it). The stream's place
    /// (<see cref="DnsStreamSlot"/>, when given) counts the query in flight meanwhile.</remarks>
    public async ValueTask<int> AnswerAsync(Memory<byte> query, DnsAnswerBuffer response, bool udp, int clientInFlight, CancellationToken cancellationToken)
    {
        slot?.QueryStarted();
        bool forwarded = false;
        try
        {
            // The upstream client receives into the buffer it is given, so the parent rents the largest answer up front;
            // DnsStreamLimits.MaxInFlightPerGateway and ReservedPerStream bound how many are held.
            var result = await ResolveAsync(query, response.GetMemory(DnsTcpFraming.MaxMessageLength), cancellationToken).ConfigureAwait(false);
            forwarded = result.Outcome is DnsQueryOutcome.Forwarded or DnsQueryOutcome.UpstreamFailed;
            Complete(result);
            return result.Length;
        }
        finally
        {
            slot?.QueryEnded(forwarded);
        }
    }

    /// <inheritdoc />
    public int AnswerOverloaded(ReadOnlySpan<byte> query, Span<byte> response, string reason)
    {
        var result = DnsQueryResult.Answer(DnsQueryOutcome.Overloaded, query, response, default, reason);
        Complete(result);
        return result.Length;
    }

    private async ValueTask<DnsQueryResult> ResolveAsync(Memory<byte> query, Memory<byte> response, CancellationToken aborted)
    {
        if (DnsScreening.Screen(query.Span, response.Span, out DnsQuestion question, out int questionEnd) is { } screened)
        {
            return screened;
        }

        // Report mode's would-deny line is logged with the answer (Complete), so it can say what the name was answered.
        PolicyDecision decision = policy.CheckName(question.Name);
        if (!decision.IsAllowed)
        {
            return DnsQueryResult.Denied(query.Span, response.Span, question, decision);
        }

        query = query[..DnsForwarding.Minimize(query.Span, questionEnd)];
        int answer = await upstreams.ResolveAsync(query, response, aborted).ConfigureAwait(false);
        if (answer < 0)
        {
            string why = upstreams.DescribeFailure(answer);
            ushort infoCode = answer == DnsUpstreamQuery.SocketFailed ? DnsEdns.InfoCodeNetworkError : DnsEdns.InfoCodeNoReachableAuthority;
            return DnsQueryResult.Answer(DnsQueryOutcome.UpstreamFailed, query.Span, response.Span, question, why, infoCode) with { Decision = decision };
        }

        DnsAnswerLearner.Learn(policy, question.Name, response.Span[..answer], logger);
        return new DnsQueryResult(DnsQueryOutcome.Forwarded, answer, question, string.Empty) { Decision = decision, ForwardedCode = DnsForwarding.ResponseCode(response.Span[..answer]) };
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
            case DnsQueryOutcome.DeniedName when deniedLines.TryEnter(out long deniedBack):
                // The first ten a second name what they are; the rest are counted (metrics count every one).
                GatewayLog.DnsDenied(logger, question.LogName, DnsTypeName.Of(question.Type), result.Decision.WithoutDeniedPrefix, new HeldBackLines(deniedBack));
                break;
            case DnsQueryOutcome.UpstreamFailed when failedLines.TryEnter(out long failedBack):
                // One at a time in normal running; every query while the upstreams are down: the first ten a second, counted.
                GatewayLog.DnsUpstreamFailed(logger, question.LogName, DnsTypeName.Of(question.Type), result.Reason, new HeldBackLines(failedBack));

                break;
            case DnsQueryOutcome.Overloaded when overloadLines.TryEnter(out long suppressed):
                DnsLog.QueryOverloaded(logger, result.Reason, suppressed);
                break;
            case DnsQueryOutcome.FormErr or DnsQueryOutcome.NotImp or DnsQueryOutcome.BadVers or DnsQueryOutcome.Dropped:
                GatewayLog.DnsNotForwarded(logger, result.Reason, result.Action);
                break;
        }

        metrics?.DnsQuery(result.MetricTag);
    }
}
