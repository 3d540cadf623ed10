using System.Buffers.Binary;
using Egress.Dns;
using Egress.Dns.Wire;
using static Egress.Fuzzing.FuzzInvariantException;

namespace Egress.Fuzzing;

/// <summary>
/// A DNS query from an app in the enclave, as both forwarders read it: the header, the single question, the EDNS
/// OPT record, the screening that decides between forwarding and a local answer, and every synthesized answer. The
/// contract: no exception; both question readers agree; a query is forwarded only when it is well-formed, and then
/// the name the policy checks spells exactly the name on the wire; every synthesized answer reads back (same ID,
/// its RCODE, the question, a well-formed OPT record).
/// </summary>
internal static class DnsQueryTarget
{
    public static FuzzVerdict Run(byte[] message)
    {
        _ = DnsHeader.TryRead(message, out _);
        _ = DnsMessage.IsTruncated(message);
        _ = DnsMessage.HasUnimplementedOpcode(message);

        DnsParseError error = DnsMessage.TryParseQuestion(message, out DnsQuestion question, out int questionEnd);
        Require(Enum.IsDefined(error), $"undefined parse error {error}");
        Span<char> name = stackalloc char[DnsMessage.MaxNameLength];
        Require(DnsMessage.TryReadQuestionName(message, name, out int nameLength) == error, "the two question readers disagree");
        if (error == DnsParseError.None)
        {
            Require(questionEnd >= DnsHeader.Length + 5 && questionEnd <= message.Length, "question end outside the message");
            Require(name[..nameLength].SequenceEqual(question.Name), "the two question readers read different names");
            Require(DnsWireName.Spells(question.Name, message.AsSpan(DnsHeader.Length, questionEnd - 4 - DnsHeader.Length)), $"the name checked ('{question.Name}') is not the name on the wire");
            Require(question.Type == BinaryPrimitives.ReadUInt16BigEndian(message.AsSpan(questionEnd - 4)) && question.Class == BinaryPrimitives.ReadUInt16BigEndian(message.AsSpan(questionEnd - 2)), "type or class misread");
        }
        else
        {
            Require(questionEnd == 0 && question == default && nameLength == 0, "a failed parse returned a question");
        }

        DnsEdns edns = DnsMessage.ReadEdns(message, error == DnsParseError.None ? questionEnd : DnsHeader.Length);
        Require(Enum.IsDefined(edns.State) && (edns.State == DnsEdnsState.Present || edns == new DnsEdns(edns.State, 0, false)), "EDNS fields without an OPT record");
        for (int end = -1; end <= message.Length + 1; end += Math.Max(1, message.Length / 4))
        {
            _ = DnsMessage.ReadEdns(message, end);
        }

        byte[] response = new byte[DnsMessage.MaxErrorResponseLength];
        DnsQueryResult? screened = DnsScreening.Screen(message, response, out DnsQuestion screenedQuestion, out int screenedEnd);
        if (screened is null)
        {
            Require(error == DnsParseError.None && screenedQuestion == question && screenedEnd == questionEnd, "a malformed query passed screening");
            Require(edns.State != DnsEdnsState.Malformed && !edns.IsUnsupportedVersion, "a query with a bad OPT record passed screening");
        }
        else
        {
            DnsQueryResult result = screened.Value;
            Require(result.Outcome is DnsQueryOutcome.NotImp or DnsQueryOutcome.FormErr or DnsQueryOutcome.BadVers or DnsQueryOutcome.Dropped, $"screening gave {result.Outcome}");
            if (result.Length >= 0)
            {
                CheckAnswer(message, response.AsSpan(0, result.Length), -1);
            }
        }

        foreach ((int rcode, AnswerWriter write) in Writers)
        {
            int length = write(message, response);
            if (length >= 0)
            {
                CheckAnswer(message, response.AsSpan(0, length), rcode);
            }
        }

        return screened is null ? FuzzVerdict.Accepted : FuzzVerdict.Rejected;
    }

    private delegate int AnswerWriter(ReadOnlySpan<byte> query, Span<byte> destination);

    private static readonly (int Rcode, AnswerWriter Write)[] Writers =
    [
        (5, DnsMessage.WriteRefused),
        (2, DnsMessage.WriteServFail),
        (1, DnsMessage.WriteFormErr),
        (3, DnsMessage.WriteDenied),
        (4, DnsMessage.WriteNotImp),
        (0, DnsMessage.WriteBadVers),
    ];

    private static void CheckAnswer(ReadOnlySpan<byte> query, ReadOnlySpan<byte> answer, int rcode)
    {
        Require(answer.Length >= DnsHeader.Length && answer.Length <= DnsMessage.MaxErrorResponseLength, "answer length out of range");
        Require(DnsHeader.TryRead(answer, out DnsHeader header), "answer header unreadable");
        Require(header.IsResponse && header.Id == DnsMessage.ReadId(query), "answer is not a response with the query's ID");
        Require(rcode < 0 ? header.ResponseCode is 0 or 1 or 4 : header.ResponseCode == rcode, $"answer RCODE {header.ResponseCode}, expected {rcode}");
        Require(header.QdCount <= 1 && header.AnCount == 0 && header.NsCount == 0 && header.ArCount <= 1, "answer counts");
        int recordsStart = DnsHeader.Length;
        if (header.QdCount == 1)
        {
            Require(DnsName.Skip(answer, DnsHeader.Length, out int nameEnd) == DnsParseError.None && answer.Length - nameEnd >= 4, "answer question does not read back");
            recordsStart = nameEnd + 4;
        }

        DnsEdns edns = DnsEdns.Read(answer, recordsStart);
        Require(edns.State == (header.ArCount == 1 ? DnsEdnsState.Present : DnsEdnsState.Absent), "answer OPT record does not read back");
    }
}

/// <summary>The wire form of a dotted name, to check that a name read spells the bytes it came from.</summary>
internal static class DnsWireName
{
    /// <summary>Whether <paramref name="wire"/> (uncompressed labels and the root) is exactly <paramref name="name"/>.</summary>
    public static bool Spells(string name, ReadOnlySpan<byte> wire)
    {
        int offset = 0;
        if (name.Length > 0)
        {
            foreach (string label in name.Split('.'))
            {
                if (label.Length is 0 or > 63 || offset + 1 + label.Length > wire.Length || wire[offset] != label.Length)
                {
                    return false;
                }

                for (int i = 0; i < label.Length; i++)
                {
                    if (wire[offset + 1 + i] != label[i])
                    {
                        return false;
                    }
                }

                offset += 1 + label.Length;
            }
        }

        return offset == wire.Length - 1 && wire[offset] == 0;
    }
}
