using Egress.Tunnel;
using static Egress.Fuzzing.FuzzInvariantException;

namespace Egress.Fuzzing;

/// <summary>
/// The denial report reader (<see cref="DenialReportCodec.TryReadRecord"/>, docs/tunnel-protocol.md, "Denial
/// reports") on untrusted bytes, read as the parent reads the payload of a report stream: records until the end byte.
/// The contract: a defined result and no exception; the same records and the same end however the bytes arrive (whole,
/// or a few at a time); a record re-encodes to exactly its bytes and every shorter prefix of it is Incomplete; an
/// error consumes nothing; a record's fields are within their documented bounds; a subject the parent shows
/// (<see cref="DenialReportCodec.IsSubjectShape"/>) holds only the characters of a name or an endpoint and none of a log
/// line's separators.
/// </summary>
internal static class DenialReportTarget
{
    // Every character a subject in its kind's shape can hold (DenialReportCodec.IsSubjectShape): names, endpoints,
    // "server name", "(none)", the cut's "...".
    private const string ShapeCharacters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:[]()% ";

    public static FuzzVerdict Run(byte[] input)
    {
        var (records, end) = Read(input, receive: input.Length);
        var (trickled, trickledEnd) = Read(input, receive: 1 + (input.Length % 5));
        Require(end == trickledEnd && records.SequenceEqual(trickled), $"the outcome depends on how the bytes arrive: {end} vs {trickledEnd}");
        return end == DenialReportReadResult.End.ToString() ? FuzzVerdict.Accepted : FuzzVerdict.Rejected;
    }

    private static (List<DenialRecord> Records, string End) Read(byte[] input, int receive)
    {
        var records = new List<DenialRecord>();
        var encoded = new byte[DenialReportCodec.MaxRecordLength];
        int available = Math.Min(receive, input.Length);
        int position = 0;
        while (true)
        {
            ReadOnlySpan<byte> seen = input.AsSpan(position, available - position);
            var result = DenialReportCodec.TryReadRecord(seen, out DenialRecord record, out int consumed);
            Require(Enum.IsDefined(result), $"undefined result {result}");
            Require(consumed >= 0 && consumed <= seen.Length, "consumed past the bytes seen");
            switch (result)
            {
                case DenialReportReadResult.Incomplete:
                    Require(consumed == 0 && seen.Length < DenialReportCodec.MaxRecordLength, "Incomplete with a whole record's bytes");
                    if (available == input.Length)
                    {
                        return (records, seen.Length == 0 ? "ended at a record boundary" : "ended inside a record");
                    }

                    available = Math.Min(available + receive, input.Length);
                    continue;
                case DenialReportReadResult.End:
                    Require(consumed == 1 && seen[0] == DenialReportCodec.End, "End without the end byte");
                    return (records, result.ToString());
                case DenialReportReadResult.Complete:
                    Require(record.Count >= 1 && record.Kind != 0, "a record with a count of 0 or kind 0");
                    Require(DenialReportCodec.IsReason(record.Reason), "a reason outside its bytes or length");
                    Require(record.Subject.Length <= DenialReportCodec.MaxSubjectLength && DenialReportCodec.Subject(record.Subject) == record.Subject, "a subject outside printable ASCII or too long");
                    bool shaped = DenialReportCodec.IsSubjectShape(record.Kind, record.Subject);
                    Require(!shaped || !record.Subject.AsSpan().ContainsAnyExcept(ShapeCharacters), "a subject in shape with a character no shape has");
                    Require(!shaped || !(record.Subject.Contains(": ", StringComparison.Ordinal) || record.Subject.Contains(';', StringComparison.Ordinal)), "a subject in shape with a log line's separator");
                    int length = DenialReportCodec.WriteRecord(record, encoded);
                    Require(length == consumed && encoded.AsSpan(0, length).SequenceEqual(seen[..consumed]), "a record does not re-encode to its bytes");
                    for (int prefix = 0; prefix < consumed; prefix++)
                    {
                        Require(DenialReportCodec.TryReadRecord(seen[..prefix], out _, out _) == DenialReportReadResult.Incomplete, "a prefix of a complete record is not Incomplete");
                    }

                    records.Add(record);
                    position += consumed;
                    if (records.Count > DenialReportCodec.MaxRecords)
                    {
                        return (records, "more records than a report carries");
                    }

                    continue;
                default:
                    Require(consumed == 0 && record == default, "an error consumed bytes or returned a record");
                    return (records, result.ToString());
            }
        }
    }
}
