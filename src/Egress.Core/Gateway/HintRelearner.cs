using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Egress.Dns;
using Egress.Dns.Upstream;
using Egress.Dns.Wire;
using Egress.Policy;
using Microsoft.Extensions.Logging;

namespace Egress.Gateway;

/// <summary>
/// Re-establishes, after the parent lost its cache (a restart of egress-host) while the enclave still allows an
/// address, that the address belongs to the request's host hint: when the hint is an allowed name, the
/// parent resolves it itself through its upstream resolvers (A or AAAA by the address's family, within the upstream
/// client's DNS timeout), learns the answer as it would a DNS stream's, and decides again. The address is allowed only
/// when the parent's own answer contains it: the hint is chosen by the enclave and never allows anything by itself.
/// Every decision it returns, the failures' included, is the connection's (address and port, with its hold): the
/// address may have been learned meanwhile through another name, whose entry's ports still apply.
/// </summary>
internal sealed class HintRelearner(EgressPolicy policy, DnsUpstreamClient upstreams, ILogger logger)
{
    private const ushort TypeA = 1;
    private const ushort TypeAaaa = 28;
    private const int ResponseBufferLength = 65535;

    /// <summary>How the parent's denial detail says the hint did not re-learn the address, before why (without the hint,
    /// which the enclave sent: a review found a 128-character one pushed the reason past the detail's 255 bytes);
    /// egress-enclave reads it to give the right advice (<see cref="Proxy.ProxyLog"/>).</summary>
    internal const string NotRelearned = "the parent could not re-learn the address from its hint";

    /// <summary>Whether a denial is one that resolving the hint may turn into an allowance: the parent does not know
    /// the address at all (an address it knows as expired stays denied, as the enclave's would). In report mode the
    /// caller asks for a would-deny too, so that a parent that lost its cache does not report what enforce allows.</summary>
    public static bool MayRelearn(PolicyDecision decision, string? hint) =>
        hint is not null && decision.Reason == DecisionReason.NeverLearned;

    /// <summary>
    /// Resolves <paramref name="hint"/> and decides the connection to <paramref name="address"/>:<paramref name="port"/> again.
    /// </summary>
    /// <returns>The new decision with its hold (see <see cref="EgressPolicy"/>); when not re-learned, why: for this
    /// host's log (<c>Why</c>, naming its upstreams) and for the enclave (<c>Told</c>, the denial's detail: a library trial
    /// read only "never learned from an allowed name" for an allowed name whose re-resolution had failed).</returns>
    public async ValueTask<(PolicyDecision Decision, AddressHold? Hold, string? Why, string? Told)> RelearnAsync(
        IPAddress address, int port, string hint, CancellationToken aborted)
    {
        PolicyDecision name = policy.CheckName(hint);
        if (!name.IsAllowed || name.WouldDeny)
        {
            return Again($"hint {hint} is not an allowed name ({name})", "the hint is not an allowed name here");
        }

        bool v6 = address.AddressFamily == AddressFamily.InterNetworkV6 && !address.IsIPv4MappedToIPv6;
        ushort type = v6 ? TypeAaaa : TypeA;
        byte[] query = ArrayPool<byte>.Shared.Rent(DnsQueryWriter.MaxLength);
        byte[] response = ArrayPool<byte>.Shared.Rent(ResponseBufferLength);
        try
        {
            int queryLength = DnsQueryWriter.Write((ushort)RandomNumberGenerator.GetInt32(ushort.MaxValue + 1), hint, type, query);
            if (queryLength < 0)
            {
                return Again($"hint {hint} is not a valid DNS name", "the hint is not a valid DNS name");
            }

            int answer = await upstreams.ResolveAsync(query.AsMemory(0, queryLength), response, aborted).ConfigureAwait(false);
            if (answer < 0)
            {
                // Not "in time" whatever happened: a trial read that after 149 ms, the upstream having refused at once.
                return answer == DnsUpstreamQuery.Aborted
                    ? Again($"resolving {hint} {DnsTypeName.Of(type)} was abandoned (the stream ended or the host is stopping)", "resolving it was abandoned")
                    : Again(
                        $"resolving {hint} {DnsTypeName.Of(type)} failed: {upstreams.DescribeFailure(answer)}",
                        answer == DnsUpstreamQuery.SocketFailed ? "its DNS upstreams refused or were unreachable" : "its DNS upstreams did not answer in time");
            }

            int learned = DnsAnswerLearner.Learn(policy, hint, response.AsSpan(0, answer), logger);
            PolicyDecision decision = policy.CheckConnection(address, port, out AddressHold? hold);
            string resolved = $"{DnsTypeName.Of(type)} resolved to {learned} learnable address{(learned == 1 ? string.Empty : "es")}";
            return decision.IsAllowed && !decision.WouldDeny
                ? (decision, hold, null, null)
                : decision.Reason == DecisionReason.NeverLearned
                    ? (decision, hold, $"{hint} {resolved}, not including {address}", $"{NotRelearned}: {resolved}, not this one")
                    : (decision, hold, $"{hint} {DnsTypeName.Of(type)} resolved to {address}, but the connection is {decision}", null);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(response);
            ArrayPool<byte>.Shared.Return(query);
        }

        // Not re-learned: decided again as it stands now. A red-team trial: while the hint's resolution waited for a
        // silent upstream (2 s), the app resolved a name allowed on port 443 only to the same address, and the
        // address-only check made here then allowed the connection on port 25.
        (PolicyDecision, AddressHold?, string?, string?) Again(string why, string told) =>
            (policy.CheckConnection(address, port, out AddressHold? hold), hold, why, $"{NotRelearned}: {told}");
    }
}
