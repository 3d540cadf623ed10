using System.Globalization;

namespace Egress.Dns.Wire;

/// <summary>
/// What both forwarders (the enclave's and the parent's) answer before a query's name is even looked at: NOTIMP
/// for an opcode other than QUERY, FORMERR for a malformed query (RFC 6891 §6.1.1 for a malformed or repeated OPT
/// record, answered without OPT so that the client may retry without EDNS), BADVERS for an EDNS version other
/// than 0 (RFC 6891 §6.1.3). Everything else is a well-formed standard query whose name the caller checks.
/// </summary>
internal static class DnsScreening
{
    /// <summary>Screens <paramref name="query"/>.</summary>
    /// <param name="query">The query.</param>
    /// <param name="response">Receives a synthesized answer; must hold <see cref="DnsMessage.MaxErrorResponseLength"/> bytes.</param>
    /// <param name="question">The question when the query is to be forwarded.</param>
    /// <param name="questionEnd">Where the question section ends when the query is to be forwarded.</param>
    /// <returns>Null when the query is well-formed (check its name and forward it); otherwise the answer written
    /// (NOTIMP, FORMERR, BADVERS) or <see cref="DnsQueryOutcome.Dropped"/> when the query is not answerable.</returns>
    public static DnsQueryResult? Screen(ReadOnlySpan<byte> query, Span<byte> response, out DnsQuestion question, out int questionEnd)
    {
        question = default;
        questionEnd = 0;
        if (DnsMessage.HasUnimplementedOpcode(query))
        {
            return DnsQueryResult.Answer(
                DnsQueryOutcome.NotImp, query, response, default, "opcode " + ((query[2] >> 3) & 0xF).ToString(CultureInfo.InvariantCulture));
        }

        DnsParseError error = DnsMessage.TryParseQuestion(query, out question, out questionEnd);
        if (error != DnsParseError.None)
        {
            // The name as sent, escaped: the client's text, so a log line can say which query it was.
            string name = query.Length > DnsHeader.Length ? DnsName.Describe(query, DnsHeader.Length) : "(none)";
            return DnsQueryResult.Answer(DnsQueryOutcome.FormErr, query, response, default, $"{error} in the question {name}");
        }

        DnsEdns edns = DnsMessage.ReadEdns(query, questionEnd);
        if (edns.State == DnsEdnsState.Malformed)
        {
            return DnsQueryResult.Answer(DnsQueryOutcome.FormErr, query, response, question, "malformed records after the question or EDNS OPT record");
        }

        if (edns.IsUnsupportedVersion)
        {
            return DnsQueryResult.Answer(DnsQueryOutcome.BadVers, query, response, question, "EDNS version " + edns.Version.ToString(CultureInfo.InvariantCulture));
        }

        return null;
    }
}
