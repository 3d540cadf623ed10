using System.Buffers.Binary;
using System.Net;

namespace Egress.Policy;

/// <summary>
/// An address as one 128-bit number. IPv4 addresses are stored in their IPv4-mapped form (<c>::ffff:a.b.c.d</c>),
/// so an IPv4 address and its mapped IPv6 form are the same value.
/// </summary>
internal static class AddressValue
{
    private static readonly UInt128 MappedPrefix = new(0, 0x0000_FFFF_0000_0000);
    private static readonly UInt128 MappedMask = new(ulong.MaxValue, 0xFFFF_FFFF_0000_0000);

    public static UInt128 Of(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        _ = address.TryWriteBytes(bytes, out int written);
        return Of(bytes[..written]);
    }

    /// <summary>The value of an address in network byte order: 4 bytes (IPv4, as in an A record's data) or 16 (IPv6,
    /// as in an AAAA record's).</summary>
    public static UInt128 Of(ReadOnlySpan<byte> bytes) =>
        bytes.Length == 4 ? FromIPv4(BinaryPrimitives.ReadUInt32BigEndian(bytes)) : BinaryPrimitives.ReadUInt128BigEndian(bytes);

    public static UInt128 FromIPv4(uint address) => MappedPrefix | address;

    public static bool IsIPv4(UInt128 value) => (value & MappedMask) == MappedPrefix;

    public static uint LowIPv4(UInt128 value) => (uint)value;

    /// <summary>The address a value stands for: an IPv4 address for a mapped value, else the IPv6 address.</summary>
    public static IPAddress ToAddress(UInt128 value)
    {
        if (IsIPv4(value))
        {
            Span<byte> v4 = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(v4, LowIPv4(value));
            return new IPAddress(v4);
        }

        Span<byte> v6 = stackalloc byte[16];
        BinaryPrimitives.WriteUInt128BigEndian(v6, value);
        return new IPAddress(v6);
    }
}
