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
    /// <summary>The query is well-formed: check its name and forward it.</summary>
    public const int Forward = -2;

    /// <summary>Screens <paramref name="query"/>.</summary>
    /// <param name="query">The query.</param>
    /// <param name="response">Receives a synthesized answer; must hold <see cref="DnsMessage.MaxErrorResponseLength"/> bytes.</param>
    /// <param name="question">The question when the result is <see cref="Forward"/>.</param>
    /// <param name="questionEnd">Where the question section ends when the result is <see cref="Forward"/>.</param>
    /// <param name="outcome">The metric outcome ("notimp", "formerr", "badvers") when the result is not
    /// <see cref="Forward"/>.</param>
    /// <param name="reason">Why, for the log.</param>
    /// <returns><see cref="Forward"/>; the length of the answer written; or -1 when the query is not answerable
    /// (drop it).</returns>
    public static int Screen(ReadOnlySpan<byte> query, Span<byte> response, out DnsQuestion question, out int questionEnd, out string outcome, out string reason)
    {
        outcome = "forward";
        reason = "";
        question = default;
        questionEnd = 0;
        if (DnsMessage.HasUnimplementedOpcode(query))
        {
            outcome = "notimp";
            reason = "opcode " + ((query[2] >> 3) & 0xF).ToString(CultureInfo.InvariantCulture);
            return DnsMessage.WriteNotImp(query, response);
        }

        DnsParseError error = DnsMessage.TryParseQuestion(query, out question, out questionEnd);
        if (error != DnsParseError.None)
        {
            outcome = "formerr";
            reason = error.ToString();
            return DnsMessage.WriteFormErr(query, response);
        }

        DnsEdns edns = DnsMessage.ReadEdns(query, questionEnd);
        if (edns.State == DnsEdnsState.Malformed)
        {
            outcome = "formerr";
            reason = "malformed records after the question or EDNS OPT record";
            return DnsMessage.WriteFormErr(query, response);
        }

        if (edns.IsUnsupportedVersion)
        {
            outcome = "badvers";
            reason = "EDNS version " + edns.Version.ToString(CultureInfo.InvariantCulture);
            return DnsMessage.WriteBadVers(query, response);
        }

        return Forward;
    }
}
