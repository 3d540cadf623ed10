using System.Net;

namespace Egress.Policy;

/// <summary>
/// A CIDR block over <see cref="AddressValue"/> numbers. An IPv4 block only contains IPv4 values and an IPv6 block
/// only IPv6 values, even when an IPv6 prefix such as <c>::/8</c> would arithmetically cover the mapped range;
/// a block inside <c>::ffff:0:0/96</c> is an IPv4 block.
/// </summary>
internal readonly struct AddressBlock
{
    private readonly UInt128 _first;
    private readonly bool _isIPv4;

    private AddressBlock(UInt128 first, int prefixLength)
    {
        _first = first;
        PrefixLength = prefixLength;
        _isIPv4 = prefixLength >= 96 && AddressValue.IsIPv4(first);
    }

    /// <summary>The first address of the block.</summary>
    public UInt128 First => _first;

    /// <summary>The prefix length in 128-bit terms (an IPv4 /8 is 104).</summary>
    public int PrefixLength { get; }

    public static AddressBlock From(IPNetwork network)
    {
        bool isIPv4 = network.BaseAddress.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork;
        return new AddressBlock(AddressValue.Of(network.BaseAddress), network.PrefixLength + (isIPv4 ? 96 : 0));
    }

    /// <summary>Parses a trusted CIDR literal of a built-in table.</summary>
    public static AddressBlock Parse(string cidr) => From(IPNetwork.Parse(cidr));

    public bool Contains(UInt128 value) =>
        AddressValue.IsIPv4(value) == _isIPv4
        && (PrefixLength == 0 || (value ^ _first) >> (128 - PrefixLength) == UInt128.Zero);
}
