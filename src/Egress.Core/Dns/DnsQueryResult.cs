using Egress.Dns.Wire;
using Egress.Policy;

namespace Egress.Dns;

/// <summary>
/// What one DNS query came to, on either side: the outcome, the length of the answer in the response buffer (-1:
/// none, drop the query), the question and why. The answer an outcome is answered with (RCODE, EDE) and its metric
/// tag are derived here, in one place; each side's <c>Complete</c> logs from the same outcome.
/// </summary>
/// <param name="Outcome">What happened.</param>
/// <param name="Length">The answer's length in the response buffer; -1 when nothing is sent.</param>
/// <param name="Question">The question (default when the query was screened out before it was read).</param>
/// <param name="Reason">Why it was not forwarded or failed, for the log; empty otherwise.</param>
internal readonly record struct DnsQueryResult(DnsQueryOutcome Outcome, int Length, DnsQuestion Question, string Reason)
{
    /// <summary>Gets the policy decision (<see cref="DnsQueryOutcome.DeniedName"/>; for a question that was forwarded,
    /// the decision that let it through, which in report mode may be a would-deny).</summary>
    public PolicyDecision Decision { get; init; }

    /// <summary>Gets the RCODE of the answer a forwarded query got (<see cref="DnsQueryOutcome.Forwarded"/>,
    /// <see cref="DnsQueryOutcome.Truncated"/>): NXDOMAIN from the upstream is forwarded too; null otherwise.</summary>
    public int? ForwardedCode { get; init; }

    /// <summary>Gets the <c>egress.outcome</c> tag of <c>egress.dns.queries</c>.</summary>
    public string MetricTag => MetricTagOf(Outcome);

    /// <summary>Gets what the log says was done: <c>dropped</c> or <c>answered FORMERR</c> and the like; for a forwarded
    /// answer its own RCODE (<c>answered NXDOMAIN</c>).</summary>
    public string Action => Outcome == DnsQueryOutcome.Dropped ? "dropped" : "answered " + (ForwardedCode is { } code ? RcodeText(code) : RcodeName(Outcome));

    /// <summary>An RCODE's mnemonic (RFC 1035 §4.1.1, RFC 6895 §2.3), e.g. <c>NXDOMAIN</c>; <c>RCODE 9</c> for another.</summary>
    internal static string RcodeText(int rcode) => rcode switch
    {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "RCODE " + rcode.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>The metric tag of an outcome: lower-case, as documented for <c>egress.dns.queries</c>.</summary>
    public static string MetricTagOf(DnsQueryOutcome outcome) => outcome switch
    {
        DnsQueryOutcome.Forwarded => "forwarded",
        DnsQueryOutcome.Truncated => "truncated",
        DnsQueryOutcome.DeniedName => "denied",
        DnsQueryOutcome.UpstreamFailed => "servfail",
        DnsQueryOutcome.Overloaded => "overloaded",
        DnsQueryOutcome.FormErr => "formerr",
        DnsQueryOutcome.NotImp => "notimp",
        DnsQueryOutcome.BadVers => "badvers",
        _ => "dropped",
    };

    /// <summary>
    /// Writes the answer a locally answered outcome gets (<see cref="DnsQueryOutcome.DeniedName"/>: NXDOMAIN + EDE,
    /// <see cref="DnsQueryOutcome.UpstreamFailed"/>: SERVFAIL (+ EDE when given), <see cref="DnsQueryOutcome.Overloaded"/>: SERVFAIL + EDE, FORMERR, NOTIMP, BADVERS) and returns the result; an
    /// outcome whose answer cannot be written (no readable header or question) becomes
    /// <see cref="DnsQueryOutcome.Dropped"/>.
    /// </summary>
    /// <param name="outcome">A locally answered outcome.</param>
    /// <param name="query">The query.</param>
    /// <param name="response">Receives the answer; at least <see cref="DnsMessage.MaxErrorResponseLength"/> bytes.</param>
    /// <param name="question">The question, when it was read.</param>
    /// <param name="reason">Why, for the log.</param>
    /// <param name="infoCode">For <see cref="DnsQueryOutcome.UpstreamFailed"/>, the Extended DNS Error its SERVFAIL
    /// carries when the query has EDNS (<see cref="DnsEdns.InfoCodeNoReachableAuthority"/> or
    /// <see cref="DnsEdns.InfoCodeNetworkError"/>, <see cref="DnsEdns.InfoCodeBlocked"/>); null for none.</param>
    /// <param name="extraText">Its EXTRA-TEXT; empty: the info code's (<see cref="DnsEdns.ExtraTextOf"/>).</param>
    /// <returns>The result.</returns>
    public static DnsQueryResult Answer(
        DnsQueryOutcome outcome, ReadOnlySpan<byte> query, Span<byte> response, DnsQuestion question, string reason, ushort? infoCode = null, ReadOnlySpan<byte> extraText = default)
    {
        int length = outcome switch
        {
            DnsQueryOutcome.DeniedName => DnsMessage.WriteDenied(query, response, extraText),
            DnsQueryOutcome.UpstreamFailed => DnsMessage.WriteServFail(query, response, infoCode, extraText),
            DnsQueryOutcome.Overloaded => DnsMessage.WriteOverloaded(query, response),
            DnsQueryOutcome.FormErr => DnsMessage.WriteFormErr(query, response),
            DnsQueryOutcome.NotImp => DnsMessage.WriteNotImp(query, response),
            DnsQueryOutcome.BadVers => DnsMessage.WriteBadVers(query, response),
            _ => throw new ArgumentOutOfRangeException(nameof(outcome), outcome, "not answered locally"),
        };
        return new DnsQueryResult(length < 0 ? DnsQueryOutcome.Dropped : outcome, length, question, reason);
    }

    /// <summary>The answer to a name the policy denies (<see cref="DnsQueryOutcome.DeniedName"/>: NXDOMAIN, EDE Blocked
    /// whose EXTRA-TEXT says why: "egress policy: name not in allowlist", or "egress policy: egress disabled").</summary>
    public static DnsQueryResult Denied(ReadOnlySpan<byte> query, Span<byte> response, DnsQuestion question, PolicyDecision decision) =>
        Answer(DnsQueryOutcome.DeniedName, query, response, question, string.Empty,
            extraText: decision.Reason == DecisionReason.EgressDisabled ? DnsEdns.DisabledExtraText : default) with { Decision = decision };

    private static string RcodeName(DnsQueryOutcome outcome) => outcome switch
    {
        DnsQueryOutcome.DeniedName => "NXDOMAIN",
        DnsQueryOutcome.UpstreamFailed or DnsQueryOutcome.Overloaded => "SERVFAIL",
        DnsQueryOutcome.FormErr => "FORMERR",
        DnsQueryOutcome.NotImp => "NOTIMP",
        DnsQueryOutcome.BadVers => "BADVERS",
        _ => "NOERROR",
    };
}
