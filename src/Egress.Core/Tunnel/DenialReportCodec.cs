using System.Buffers.Binary;
using System.Text;

namespace Egress.Tunnel;

/// <summary>
/// The records of a denial report, the payload of a <see cref="TunnelRequestKind.DenialReport"/> stream after the
/// parent's <see cref="TunnelStatus.Ok"/> (docs/tunnel-protocol.md, "Denial reports"): each record is
/// <c>kind (u8, 1–255) | count (u32 BE, ≥ 1) | seconds (u16 BE) | reason length (u8, 1–32) | reason ([a-z0-9_]) |
/// subject length (u8, 0–200) | subject (ASCII 0x20–0x7E)</c>, and one byte 0 ends the report. Both hosts use this
/// type; the parent reads untrusted bytes with it.
/// </summary>
internal static class DenialReportCodec
{
    /// <summary>The most records one report carries; a reader refuses a report with more.</summary>
    public const int MaxRecords = 64;

    /// <summary>The longest reason token, in bytes.</summary>
    public const int MaxReasonLength = 32;

    /// <summary>The longest subject, in bytes (253, the longest DNS name, does not fit with its port: a longer subject is
    /// cut by the writer, <see cref="Subject"/>).</summary>
    public const int MaxSubjectLength = 200;

    /// <summary>The largest record, in bytes.</summary>
    public const int MaxRecordLength = FixedLength + MaxReasonLength + MaxSubjectLength;

    /// <summary>The largest report (<see cref="MaxRecords"/> records and the end byte), in bytes.</summary>
    public const int MaxReportLength = (MaxRecords * MaxRecordLength) + 1;

    /// <summary>The reason of a <see cref="DenialKind.PolicyDigest"/> record.</summary>
    public const string PolicyReason = "policy";

    /// <summary>The record that carries the enclave's policy digest (<see cref="DenialKind.PolicyDigest"/>).</summary>
    /// <param name="digest">The enclave's policy digest.</param>
    public static DenialRecord PolicyRecord(Configuration.PolicyDigest digest) =>
        new(DenialKind.PolicyDigest, PolicyReason, 1, 0, PolicySubject(digest));

    /// <summary>The subject of a policy record: <c>sha256:</c> and the digest's 64 hexadecimal digits.</summary>
    /// <param name="digest">A policy digest.</param>
    public static string PolicySubject(Configuration.PolicyDigest digest) => "sha256:" + digest.Hash;

    /// <summary>A server-name refusal's subject: the destination, these words, and the server name (or
    /// <see cref="NoServerName"/>): <c>198.51.100.7:443 server name other.example</c>.</summary>
    public const string ServerNameWords = " server name ";

    /// <summary>The server name of a server-name refusal's subject when the ClientHello had none.</summary>
    public const string NoServerName = "(none)";

    /// <summary>The byte that ends a report.</summary>
    public const byte End = 0;

    /// <summary>The byte the parent answers once it has read a report whole and logged it, before it closes the stream;
    /// a stream closed without it carried a report the parent did not take (malformed, too slow, or the parent stopping).</summary>
    public const byte Receipt = 0;

    // kind, count, seconds, reason length, subject length.
    private const int FixedLength = 1 + 4 + 2 + 1 + 1;

    /// <summary>Writes <paramref name="record"/>.</summary>
    /// <returns>The number of bytes written.</returns>
    /// <exception cref="ArgumentException">The kind is 0, the count 0, the reason or subject not valid
    /// (<see cref="DenialRecord"/>), or <paramref name="destination"/> shorter than the record
    /// (<see cref="MaxRecordLength"/> always suffices).</exception>
    public static int WriteRecord(in DenialRecord record, Span<byte> destination)
    {
        if (record.Kind == 0 || record.Count == 0 || !IsReason(record.Reason) || !IsSubject(record.Subject))
        {
            throw new ArgumentException($"Not a valid denial record: {record}.", nameof(record));
        }

        int length = FixedLength + record.Reason.Length + record.Subject.Length;
        if (destination.Length < length)
        {
            throw new ArgumentException($"The record needs {length} bytes.", nameof(destination));
        }

        destination[0] = (byte)record.Kind;
        BinaryPrimitives.WriteUInt32BigEndian(destination[1..], record.Count);
        BinaryPrimitives.WriteUInt16BigEndian(destination[5..], record.Seconds);
        destination[7] = (byte)record.Reason.Length;
        int offset = 8 + Encoding.ASCII.GetBytes(record.Reason, destination[8..]);
        destination[offset++] = (byte)record.Subject.Length;
        offset += Encoding.ASCII.GetBytes(record.Subject, destination[offset..]);
        return offset;
    }

    /// <summary>Reads one record, or the end of the report, from the start of <paramref name="buffer"/>.</summary>
    /// <param name="buffer">Received bytes, beginning at a record.</param>
    /// <param name="record">The record, when the result is <see cref="DenialReportReadResult.Complete"/>.</param>
    /// <param name="consumed">The bytes read: the record's length, 1 for the end, else 0.</param>
    /// <returns><see cref="DenialReportReadResult.Complete"/>, <see cref="DenialReportReadResult.End"/>,
    /// <see cref="DenialReportReadResult.Incomplete"/> (more bytes needed, nothing wrong so far), or the first error
    /// found, as soon as its bytes are there.</returns>
    public static DenialReportReadResult TryReadRecord(ReadOnlySpan<byte> buffer, out DenialRecord record, out int consumed)
    {
        record = default;
        consumed = 0;
        if (buffer.IsEmpty)
        {
            return DenialReportReadResult.Incomplete;
        }

        if (buffer[0] == End)
        {
            consumed = 1;
            return DenialReportReadResult.End;
        }

        if (buffer.Length < 5)
        {
            return DenialReportReadResult.Incomplete;
        }

        uint count = BinaryPrimitives.ReadUInt32BigEndian(buffer[1..]);
        if (count == 0)
        {
            return DenialReportReadResult.ZeroCount;
        }

        if (buffer.Length < 8)
        {
            return DenialReportReadResult.Incomplete;
        }

        int reasonLength = buffer[7];
        if (reasonLength is 0 or > MaxReasonLength)
        {
            return DenialReportReadResult.BadReason;
        }

        int reasonEnd = 8 + reasonLength;
        int checkedTo = Math.Min(buffer.Length, reasonEnd);
        foreach (byte b in buffer[8..checkedTo])
        {
            if (!IsReasonByte(b))
            {
                return DenialReportReadResult.BadReason;
            }
        }

        if (buffer.Length <= reasonEnd)
        {
            return DenialReportReadResult.Incomplete;
        }

        int subjectLength = buffer[reasonEnd];
        if (subjectLength > MaxSubjectLength)
        {
            return DenialReportReadResult.BadSubject;
        }

        int subjectStart = reasonEnd + 1;
        int end = subjectStart + subjectLength;
        foreach (byte b in buffer[subjectStart..Math.Min(buffer.Length, end)])
        {
            if (!IsSubjectByte(b))
            {
                return DenialReportReadResult.BadSubject;
            }
        }

        if (buffer.Length < end)
        {
            return DenialReportReadResult.Incomplete;
        }

        record = new DenialRecord(
            (DenialKind)buffer[0],
            Encoding.ASCII.GetString(buffer[8..reasonEnd]),
            count,
            BinaryPrimitives.ReadUInt16BigEndian(buffer[5..]),
            Encoding.ASCII.GetString(buffer[subjectStart..end]));
        consumed = end;
        return DenialReportReadResult.Complete;
    }

    /// <summary>
    /// <paramref name="text"/> as a record's subject: characters outside printable ASCII written as <c>?</c>, and text
    /// longer than <see cref="MaxSubjectLength"/> cut to fit with <c>...</c> at its end.
    /// </summary>
    public static string Subject(string text)
    {
        bool printable = text.Length <= MaxSubjectLength && !text.AsSpan().ContainsAnyExceptInRange((char)0x20, (char)0x7E);
        if (printable)
        {
            return text;
        }

        var builder = new StringBuilder(Math.Min(text.Length, MaxSubjectLength));
        foreach (char c in text)
        {
            builder.Append(c is >= (char)0x20 and <= (char)0x7E ? c : '?');
        }

        if (builder.Length > MaxSubjectLength)
        {
            builder.Length = MaxSubjectLength - 3;
            builder.Append("...");
        }

        return builder.ToString();
    }

    /// <summary>
    /// Whether <paramref name="subject"/> has a shape egress-enclave writes for <paramref name="kind"/>: empty (not
    /// named); a connection's destination (<c>198.51.100.7:443</c>, <c>[2001:db8::1]:443</c>); a DNS question (<c>NAME TYPE</c>, <c>. A</c> for the root); a server-name refusal
    /// (<c>ENDPOINT server name NAME</c>, or <c>(none)</c> for a ClientHello without one); a policy digest (<c>sha256:</c>
    /// and 64 lower-case hexadecimal digits). A NAME is letters, digits, <c>-</c>, <c>_</c> and <c>.</c> (what the
    /// enclave's DNS and ClientHello parsers accept), and may end in <c>...</c> where <see cref="Subject"/> cut it to
    /// <see cref="MaxSubjectLength"/>. The parent shows no other subject: a record's subject is the peer's text, and one
    /// shaped like another log line would be read as that line by whatever reads the parent's log
    /// (<c>report-to-allowlist</c> among them). A kind this version does not know has only the empty subject.
    /// </summary>
    /// <param name="kind">The record's kind.</param>
    /// <param name="subject">The record's subject.</param>
    /// <returns>True when the subject has the kind's shape.</returns>
    public static bool IsSubjectShape(DenialKind kind, string subject)
    {
        if (subject.Length == 0)
        {
            return true;
        }

        // A subject Subject cut ends in "..." in place of the rest of its last name (the longest endpoint and the words
        // before a name take far less than MaxSubjectLength): what is before it must be a whole shape's start.
        bool cut = subject.Length == MaxSubjectLength && subject.EndsWith("...", StringComparison.Ordinal);
        string text = cut ? subject[..^3] : subject;
        switch (kind)
        {
            case DenialKind.Connection:
                return !cut && IsEndPointText(text);
            case DenialKind.DnsQuestion:
                int space = text.IndexOf(' ');
                string name = space < 0 ? text : text[..space];
                string type = space < 0 ? string.Empty : text[(space + 1)..];
                return (name == "." || IsNameText(name))
                    && (cut ? type.Length == 0 || IsTypeText(type) : space > 0 && IsTypeText(type));
            case DenialKind.ServerName:
                int at = text.IndexOf(ServerNameWords, StringComparison.Ordinal);
                string serverName = at < 0 ? string.Empty : text[(at + ServerNameWords.Length)..];
                return at > 0 && IsEndPointText(text[..at]) && ((!cut && serverName == NoServerName) || IsNameText(serverName));
            case DenialKind.PolicyDigest:
                return subject.Length == 7 + 64 && subject.StartsWith("sha256:", StringComparison.Ordinal)
                    && !subject.AsSpan(7).ContainsAnyExcept("0123456789abcdef");
            default:
                return false;
        }

        static bool IsNameText(string name) =>
            name.Length > 0 && name.All(c => c == '.' || (c < 0x80 && Dns.Wire.DnsName.IsHostnameByte((byte)c)));

        static bool IsTypeText(string type) =>
            type.Length is > 0 and <= 16 && !type.AsSpan().ContainsAnyExcept("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");

        // As IPEndPoint writes one, and nothing else (IPEndPoint.TryParse also takes a bare address, and other spellings).
        static bool IsEndPointText(string text) =>
            System.Net.IPEndPoint.TryParse(text, out var endPoint) && endPoint.Port > 0 && endPoint.ToString() == text;
    }

    /// <summary>Whether <paramref name="reason"/> is a valid reason token.</summary>
    public static bool IsReason(string? reason) =>
        reason is { Length: > 0 and <= MaxReasonLength } && reason.All(c => c < 0x80 && IsReasonByte((byte)c));

    private static bool IsSubject(string? subject) =>
        subject is { Length: <= MaxSubjectLength } && !subject.AsSpan().ContainsAnyExceptInRange((char)0x20, (char)0x7E);

    private static bool IsReasonByte(byte b) => b is (>= (byte)'a' and <= (byte)'z') or (>= (byte)'0' and <= (byte)'9') or (byte)'_';

    private static bool IsSubjectByte(byte b) => b is >= 0x20 and <= 0x7E;
}
