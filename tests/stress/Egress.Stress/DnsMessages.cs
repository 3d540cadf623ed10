using System.Buffers.Binary;
using System.Text;

namespace Egress.Stress;

/// <summary>The few DNS messages the clients send (RFC 1035 section 4.1) and the header fields they read back.</summary>
internal static class DnsMessages
{
    public const int HeaderLength = 12;

    /// <summary>A recursive query for <paramref name="name"/>, type A, class IN.</summary>
    public static byte[] Query(ushort id, string name)
    {
        byte[] question = Question(name);
        byte[] message = new byte[HeaderLength + question.Length];
        WriteHeader(message, id, additionalCount: 0);
        question.CopyTo(message, HeaderLength);
        return message;
    }

    /// <summary>
    /// A query for <paramref name="name"/> made exactly <paramref name="length"/> bytes long by one additional record
    /// (owner the root, type NULL, class IN, TTL 0) whose RDATA is zeros: well formed, so it passes screening.
    /// </summary>
    public static byte[] PaddedQuery(ushort id, string name, int length)
    {
        byte[] question = Question(name);
        const int RecordHeaderLength = 11; // root name, type, class, TTL, RDLENGTH
        int rdLength = length - HeaderLength - question.Length - RecordHeaderLength;
        if (rdLength is < 0 or > ushort.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, "too short for the question, or over 65,535 bytes");
        }

        byte[] message = new byte[length];
        WriteHeader(message, id, additionalCount: 1);
        question.CopyTo(message, HeaderLength);
        Span<byte> record = message.AsSpan(HeaderLength + question.Length);
        record[0] = 0; // the root
        BinaryPrimitives.WriteUInt16BigEndian(record[1..], 10); // NULL
        BinaryPrimitives.WriteUInt16BigEndian(record[3..], 1); // IN
        BinaryPrimitives.WriteUInt32BigEndian(record[5..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(record[9..], (ushort)rdLength);
        return message;
    }

    /// <summary><paramref name="message"/> with its two-byte length prefix (RFC 1035 section 4.2.2).</summary>
    public static byte[] Framed(byte[] message)
    {
        byte[] frame = new byte[2 + message.Length];
        BinaryPrimitives.WriteUInt16BigEndian(frame, checked((ushort)message.Length));
        message.CopyTo(frame, 2);
        return frame;
    }

    public static ushort Id(ReadOnlySpan<byte> message) => BinaryPrimitives.ReadUInt16BigEndian(message);

    public static int Rcode(ReadOnlySpan<byte> message) => message[3] & 0x0F;

    public static int AnswerCount(ReadOnlySpan<byte> message) => BinaryPrimitives.ReadUInt16BigEndian(message[6..]);

    private static void WriteHeader(Span<byte> message, ushort id, ushort additionalCount)
    {
        BinaryPrimitives.WriteUInt16BigEndian(message, id);
        message[2] = 0x01; // RD
        BinaryPrimitives.WriteUInt16BigEndian(message[4..], 1); // QDCOUNT
        BinaryPrimitives.WriteUInt16BigEndian(message[10..], additionalCount); // ARCOUNT
    }

    private static byte[] Question(string name)
    {
        var bytes = new List<byte>(name.Length + 6);
        foreach (string label in name.TrimEnd('.').Split('.'))
        {
            bytes.Add(checked((byte)label.Length));
            bytes.AddRange(Encoding.ASCII.GetBytes(label));
        }

        bytes.AddRange([0, 0, 1, 0, 1]); // the root, QTYPE A, QCLASS IN
        return [.. bytes];
    }
}
