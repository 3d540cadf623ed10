using System.Globalization;
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
/// them. SERVFAIL when no upstream answers in time, with the reason logged. A query too large for UDP (only possible
/// from a TCP client) goes to the upstreams over TCP, logged as such.
/// </summary>
internal sealed class UpstreamDnsAnswerer(EgressPolicy policy, DnsUpstreamClient upstreams, EgressMetrics? metrics, ILogger logger, CancellationToken aborted) : IDnsAnswerer
{
    /// <inheritdoc />
    public async ValueTask<int> AnswerAsync(Memory<byte> query, Memory<byte> response, bool udp)
    {
        int length = DnsScreening.Screen(query.Span, response.Span, out DnsQuestion question, out _, out string outcome, out string reason);
        if (length != DnsScreening.Forward)
        {
            GatewayLog.DnsNotForwarded(logger, reason, length < 0 ? "dropped" : "answered " + outcome.ToUpperInvariant());
            metrics?.DnsQuery(length < 0 ? "dropped" : outcome);
            return length;
        }

        PolicyDecision decision = policy.CheckName(question.Name);
        if (!decision.IsAllowed)
        {
            GatewayLog.DnsDenied(logger, question.Name, DnsTypeName.Of(question.Type), decision);
            metrics?.DnsQuery("denied");
            return DnsMessage.WriteDenied(query.Span, response.Span);
        }

        bool tcpOnly = DnsUpstreamClient.IsTooLargeForUdp(query.Length);
        if (tcpOnly)
        {
            GatewayLog.DnsQueryTooLargeForUdp(logger, question.Name, DnsTypeName.Of(question.Type), query.Length);
        }

        int answer = await upstreams.ResolveAsync(query, response, aborted).ConfigureAwait(false);
        if (answer < 0)
        {
            string why = (answer, tcpOnly) switch
            {
                (_, true) => $"query too large for UDP ({query.Length} bytes) and no upstream answered it over TCP in time",
                (DnsUpstreamQuery.SocketFailed, _) => "the upstream refused or was unreachable (socket error)",
                _ => "none of " + upstreams.Upstreams.Count.ToString(CultureInfo.InvariantCulture) + " upstreams answered in time",
            };
            GatewayLog.DnsUpstreamFailed(logger, question.Name, DnsTypeName.Of(question.Type), why);
            metrics?.DnsQuery("servfail");
            return DnsMessage.WriteServFail(query.Span, response.Span);
        }

        DnsAnswerLearner.Learn(policy, question.Name, response.Span[..answer], logger);
        metrics?.DnsQuery("forwarded");
        return answer;
    }
}
