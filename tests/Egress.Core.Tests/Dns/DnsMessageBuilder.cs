using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace Egress.Tests.Dns;

/// <summary>Builds DNS messages byte by byte for hostile-input tests (names are written uncompressed unless
/// <see cref="Pointer"/> is used).</summary>
internal sealed class DnsMessageBuilder
{
    private readonly List<byte> bytes = [];

    /// <summary>The offset the next byte will be written at.</summary>
    public int Offset => bytes.Count;

    /// <summary>A response header (QR=1, RD=1, RA=1) with the given RCODE and counts.</summary>
    public static DnsMessageBuilder Response(ushort qd = 1, ushort an = 0, ushort ns = 0, ushort ar = 0, int rcode = 0) =>
        new DnsMessageBuilder().Header(0x1234, (ushort)(0x8180 | rcode), qd, an, ns, ar);

    /// <summary>A query header (RD=1) with the given counts.</summary>
    public static DnsMessageBuilder Query(ushort qd = 1, ushort ar = 0) => new DnsMessageBuilder().Header(0xBEEF, 0x0100, qd, 0, 0, ar);

    public DnsMessageBuilder Header(ushort id, ushort flags, ushort qd, ushort an, ushort ns, ushort ar) =>
        UInt16(id).UInt16(flags).UInt16(qd).UInt16(an).UInt16(ns).UInt16(ar);

    public DnsMessageBuilder Bytes(params byte[] raw)
    {
        bytes.AddRange(raw);
        return this;
    }

    public DnsMessageBuilder UInt16(ushort value)
    {
        Span<byte> buffer = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(buffer, value);
        return Bytes(buffer.ToArray());
    }

    public DnsMessageBuilder UInt32(uint value)
    {
        Span<byte> buffer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(buffer, value);
        return Bytes(buffer.ToArray());
    }

    /// <summary>Labels of a dotted name without the terminating zero (to be followed by a pointer or <see cref="Root"/>).</summary>
    public DnsMessageBuilder Labels(string dotted)
    {
        foreach (string label in dotted.Split('.'))
        {
            byte[] raw = Encoding.ASCII.GetBytes(label);
            bytes.Add((byte)raw.Length);
            bytes.AddRange(raw);
        }

        return this;
    }

    public DnsMessageBuilder Root() => Bytes(0);

    /// <summary>A whole uncompressed name ("" is the root).</summary>
    public DnsMessageBuilder Name(string dotted) => dotted.Length == 0 ? Root() : Labels(dotted).Root();

    public DnsMessageBuilder Pointer(int target) => Bytes((byte)(0xC0 | (target >> 8)), (byte)target);

    public DnsMessageBuilder Question(string name, ushort type = 1, ushort @class = 1) => Name(name).UInt16(type).UInt16(@class);

    /// <summary>TYPE, CLASS, TTL and RDLENGTH of a record whose owner name was just written.</summary>
    public DnsMessageBuilder Fixed(ushort type, uint ttl, ushort rdLength, ushort @class = 1) =>
        UInt16(type).UInt16(@class).UInt32(ttl).UInt16(rdLength);

    /// <summary>An EDNS OPT record (RFC 6891 §6.1.2): root owner, CLASS = payload size, TTL = EXTENDED-RCODE,
    /// VERSION, DO and Z, then the raw options.</summary>
    public DnsMessageBuilder Opt(ushort payloadSize, uint ttl, params byte[] options) =>
        Root().Fixed(41, ttl, (ushort)options.Length, payloadSize).Bytes(options);

    public DnsMessageBuilder A(string owner, string address, uint ttl = 300) =>
        Name(owner).Fixed(1, ttl, 4).Bytes(IPAddress.Parse(address).GetAddressBytes());

    public DnsMessageBuilder Aaaa(string owner, string address, uint ttl = 300) =>
        Name(owner).Fixed(28, ttl, 16).Bytes(IPAddress.Parse(address).GetAddressBytes());

    public DnsMessageBuilder Cname(string owner, string target, uint ttl = 300) =>
        Name(owner).Fixed(5, ttl, (ushort)(target.Length + 2)).Name(target);

    public byte[] ToArray() => [.. bytes];
}
