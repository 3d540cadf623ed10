namespace Egress.Tests.Dns;

/// <summary>Raw standard queries (RD=1) for tests that talk to the forwarder without a DNS library.</summary>
internal static class DnsQueryBytes
{
    public static byte[] Build(ushort id, string name, ushort type = 1, ushort? ednsSize = null)
    {
        var builder = new DnsMessageBuilder().Header(id, 0x0100, 1, 0, 0, ednsSize is null ? (ushort)0 : (ushort)1).Question(name, type);
        if (ednsSize is ushort size)
        {
            builder = builder.Root().UInt16(41).UInt16(size).UInt32(0).UInt16(0);
        }

        return builder.ToArray();
    }

    /// <summary>A query for <paramref name="name"/> padded to exactly <paramref name="length"/> bytes with one
    /// additional record (root owner, type NULL, class IN) of zeros, as a hostile client might pad it.</summary>
    public static byte[] BuildPadded(ushort id, string name, int length)
    {
        byte[] head = new DnsMessageBuilder().Header(id, 0x0100, 1, 0, 0, 1).Question(name, 1).ToArray();
        int rdLength = length - head.Length - 11;
        byte[] record = new DnsMessageBuilder().Root().UInt16(10).UInt16(1).UInt32(0).UInt16((ushort)rdLength).ToArray();
        return [.. head, .. record, .. new byte[rdLength]];
    }

    /// <summary>A query for <paramref name="name"/> followed by zeros up to <paramref name="length"/> bytes (no
    /// record counts them): what remains readable when such a datagram is cut short.</summary>
    public static byte[] BuildWithTrailingBytes(ushort id, string name, int length)
    {
        byte[] query = Build(id, name);
        return [.. query, .. new byte[length - query.Length]];
    }

    public static int Rcode(byte[] response) => response[3] & 0x0F;

    public static int AnswerCount(byte[] response) => (response[6] << 8) | response[7];

    public static bool Truncated(byte[] response) => (response[2] & 0x02) != 0;
}
