using System.Diagnostics.CodeAnalysis;
using System.Net;

namespace Egress.Policy;

/// <summary>
/// Address ranges an enclave must never reach through a learned name or <c>*</c>: loopback, unspecified,
/// link-local (instance metadata), private, shared (CGNAT), unique-local, multicast, broadcast and reserved space,
/// including IPv4 internal addresses written as IPv4-mapped (<c>::ffff:a.b.c.d</c>), IPv4-compatible
/// (<c>::a.b.c.d</c>), NAT64 (<c>64:ff9b::a.b.c.d</c>), IPv4-translated (<c>::ffff:0:a.b.c.d</c>) or 6to4
/// (<c>2002:aabb:ccdd::/48</c>) IPv6 addresses, the local-use NAT64 prefix 64:ff9b:1::/48 and Teredo 2001::/32.
/// Documentation and benchmarking ranges (192.0.2.0/24, 198.18.0.0/15, 198.51.100.0/24, 203.0.113.0/24,
/// 2001:db8::/32) are ordinary addresses.
/// </summary>
internal static class InternalRanges
{
    private const string ViaCompatible = "via IPv4-compatible ::/96";
    private const string ViaNat64 = "via NAT64 64:ff9b::/96";
    private const string ViaTranslated = "via IPv4-translated ::ffff:0:0:0/96";
    private const string Via6to4 = "via 6to4 2002::/16";

    private static readonly UInt128 Nat64Prefix = AddressValue.Of(IPAddress.Parse("64:ff9b::"));
    private static readonly UInt128 TranslatedPrefix = AddressValue.Of(IPAddress.Parse("::ffff:0:0:0"));
    private static readonly AddressBlock SixToFour = AddressBlock.Parse("2002::/16");

    // Most specific first: the first match names the range.
    private static readonly (AddressBlock Block, string Name, string CompatibleName, string Nat64Name, string TranslatedName, string SixToFourName)[] IPv4Ranges =
    [
        IPv4("255.255.255.255/32", "broadcast 255.255.255.255"),
        IPv4("127.0.0.0/8", "loopback 127.0.0.0/8"),
        IPv4("0.0.0.0/8", "unspecified 0.0.0.0/8"),
        IPv4("169.254.0.0/16", "link-local 169.254.0.0/16 (instance metadata)"),
        IPv4("10.0.0.0/8", "private 10.0.0.0/8"),
        IPv4("172.16.0.0/12", "private 172.16.0.0/12"),
        IPv4("192.168.0.0/16", "private 192.168.0.0/16"),
        IPv4("100.64.0.0/10", "shared CGNAT 100.64.0.0/10"),
        IPv4("192.0.0.0/24", "IETF protocol assignments 192.0.0.0/24 (DS-Lite, NAT64 discovery; not globally reachable)"),
        IPv4("224.0.0.0/4", "multicast 224.0.0.0/4"),
        IPv4("240.0.0.0/4", "reserved 240.0.0.0/4"),
    ];

    private static readonly (AddressBlock Block, string Name)[] IPv6Ranges =
    [
        (AddressBlock.Parse("::/128"), "unspecified ::"),
        (AddressBlock.Parse("::1/128"), "loopback ::1"),
        (AddressBlock.Parse("fd00:ec2::254/128"), "instance metadata fd00:ec2::254 (unique local fc00::/7)"),
        (AddressBlock.Parse("fe80::/10"), "link-local fe80::/10"),
        (AddressBlock.Parse("fec0::/10"), "site-local fec0::/10 (deprecated)"),
        (AddressBlock.Parse("fc00::/7"), "unique local fc00::/7"),
        (AddressBlock.Parse("ff00::/8"), "multicast ff00::/8"),
        (AddressBlock.Parse("64:ff9b:1::/48"), "local-use NAT64 64:ff9b:1::/48 (not globally reachable)"),
        (AddressBlock.Parse("100::/64"), "discard-only 100::/64"),
        (AddressBlock.Parse("5f00::/16"), "SRv6 SIDs 5f00::/16 (not globally reachable)"),

        // RFC 4380: a relay carries it over UDP to the IPv4 address in its last 32 bits (inverted), on whatever network
        // the relay sits in (the parent's, if it runs one); IANA's special-purpose registry gives it no global
        // reachability of its own (N/A). Listed whole rather than decoded: no public service is reached through it.
        (AddressBlock.Parse("2001::/32"), "Teredo 2001::/32 (UDP-tunnelled to the IPv4 address it carries; not globally reachable)"),
    ];

    // IPv6 blocks whose addresses embed an IPv4 address and are classified by it (see TryClassify).
    private static readonly (AddressBlock Block, string Name)[] EmbeddedIPv4Forms =
    [
        (AddressBlock.Parse("::/96"), "IPv4-compatible ::/96 (every internal IPv4 range in that form)"),
        (AddressBlock.Parse("64:ff9b::/96"), "NAT64 64:ff9b::/96 (every internal IPv4 range in that form)"),
        (AddressBlock.Parse("::ffff:0:0:0/96"), "IPv4-translated ::ffff:0:0:0/96 (every internal IPv4 range in that form)"),
        (AddressBlock.Parse("2002::/16"), "6to4 2002::/16 (every internal IPv4 range in that form)"),
    ];

    // Each internal IPv4 range in each of those forms (64:ff9b::a00:0/104 is 10.0.0.0/8 via NAT64), for an entry inside
    // a form's block that covers one without naming it.
    private static readonly (AddressBlock Form, AddressBlock Block, string Name)[] EmbeddedIPv4Ranges =
    [
        .. IPv4Ranges.Select(range => (EmbeddedIPv4Forms[0].Block, Embedded(range.Block, UInt128.Zero, 0), range.CompatibleName)),
        .. IPv4Ranges.Select(range => (EmbeddedIPv4Forms[1].Block, Embedded(range.Block, Nat64Prefix, 0), range.Nat64Name)),
        .. IPv4Ranges.Select(range => (EmbeddedIPv4Forms[2].Block, Embedded(range.Block, TranslatedPrefix, 0), range.TranslatedName)),
        .. IPv4Ranges.Select(range => (EmbeddedIPv4Forms[3].Block, Embedded(range.Block, SixToFour.First, 80), range.SixToFourName)),
    ];

    /// <summary>
    /// Names the internal ranges that <paramref name="network"/> contains while being broader than each of them: what an
    /// explicit allowlist entry opens without naming it (<c>0.0.0.0/1</c> opens 10.0.0.0/8 and 127.0.0.0/8; the entry
    /// <c>10.0.0.0/8</c> itself names its range and opens nothing unnamed).
    /// </summary>
    /// <param name="network">An allowlist entry's network.</param>
    /// <param name="configured">The networks of <c>host.internal_networks</c>, named after the built-in ranges.</param>
    /// <returns>The ranges, most specific first within each family; empty when there are none.</returns>
    internal static List<string> OpenedWithoutNaming(IPNetwork network, IReadOnlyList<IPNetwork>? configured = null)
    {
        AddressBlock entry = AddressBlock.From(network);
        var names = new List<string>();
        foreach (var range in IPv4Ranges)
        {
            AddIfOpened(entry, range.Block, range.Name, names);
        }

        foreach (var (block, name) in IPv6Ranges)
        {
            AddIfOpened(entry, block, name, names);
        }

        foreach (var (block, name) in EmbeddedIPv4Forms)
        {
            // The form's block itself (64:ff9b::/96) names no IPv4 range in it: it opens them all (a red-team trial
            // reached instance metadata as 64:ff9b::a9fe:a9fe under that entry without a warning).
            if (entry.PrefixLength <= block.PrefixLength && entry.Contains(block.First))
            {
                names.Add(name);
            }
        }

        foreach (var (form, block, name) in EmbeddedIPv4Ranges)
        {
            if (entry.PrefixLength > form.PrefixLength)
            {
                AddIfOpened(entry, block, name, names);
            }
        }

        foreach (IPNetwork internalNetwork in configured ?? [])
        {
            AddIfOpened(entry, AddressBlock.From(internalNetwork), ConfiguredName(internalNetwork), names);
        }

        return names;
    }

    /// <summary>What a network of <c>host.internal_networks</c> is called in denials and warnings.</summary>
    internal static string ConfiguredName(IPNetwork network) => $"internal network {network} ([host] internal_networks)";

    /// <summary>An IPv4 range (an IPv4-mapped block) written in a form that embeds IPv4 at bit <paramref name="shift"/>
    /// after <paramref name="prefix"/> (96 bits of prefix for a shift of 0, 16 for 6to4's 80).</summary>
    private static AddressBlock Embedded(AddressBlock ipv4, UInt128 prefix, int shift)
    {
        UInt128 first = prefix | ((UInt128)AddressValue.LowIPv4(ipv4.First) << shift);
        int prefixLength = ipv4.PrefixLength - 96 + (shift == 0 ? 96 : 16);
        return AddressBlock.From(new IPNetwork(AddressValue.ToAddress(first), prefixLength));
    }

    private static void AddIfOpened(AddressBlock entry, AddressBlock range, string name, List<string> names)
    {
        if (entry.PrefixLength < range.PrefixLength && entry.Contains(range.First))
        {
            names.Add(name);
        }
    }

    /// <summary>Tells whether <paramref name="address"/> is internal and names its range. Does not allocate.</summary>
    /// <param name="address">The address to classify; an IPv4-mapped IPv6 address is classified as its IPv4 address.</param>
    /// <param name="rangeName">The range, e.g. <c>link-local 169.254.0.0/16 (instance metadata)</c>, when internal.</param>
    /// <returns><see langword="true"/> when the address is internal.</returns>
    public static bool TryClassify(IPAddress address, [NotNullWhen(true)] out string? rangeName)
    {
        ArgumentNullException.ThrowIfNull(address);
        return TryClassify(AddressValue.Of(address), out rangeName);
    }

    internal static bool TryClassify(UInt128 value, [NotNullWhen(true)] out string? rangeName)
    {
        rangeName = null;
        if (AddressValue.IsIPv4(value))
        {
            int index = IndexOfIPv4Range(value);
            rangeName = index < 0 ? null : IPv4Ranges[index].Name;
            return rangeName is not null;
        }

        foreach (var (block, name) in IPv6Ranges)
        {
            if (block.Contains(value))
            {
                rangeName = name;
                return true;
            }
        }

        EmbeddedIPv4Form form = GetEmbeddedIPv4(value, out UInt128 embedded);
        if (form != EmbeddedIPv4Form.None && IndexOfIPv4Range(embedded) is var embeddedIndex and >= 0)
        {
            var range = IPv4Ranges[embeddedIndex];
            rangeName = form switch
            {
                EmbeddedIPv4Form.Compatible => range.CompatibleName,
                EmbeddedIPv4Form.Nat64 => range.Nat64Name,
                EmbeddedIPv4Form.Translated => range.TranslatedName,
                _ => range.SixToFourName,
            };
        }

        return rangeName is not null;
    }

    // The ranges only the parent's own machine or link can mean (ParentLocalRange). The unspecified address is one:
    // Linux connects it to the machine itself (ParentAddresses counts it as the parent's own).
    private static readonly AddressBlock[] LoopbackBlocks =
        [AddressBlock.Parse("127.0.0.0/8"), AddressBlock.Parse("::1/128"), AddressBlock.Parse("0.0.0.0/32"), AddressBlock.Parse("::/128")];

    private static readonly AddressBlock[] LinkLocalBlocks =
        [AddressBlock.Parse("169.254.0.0/16"), AddressBlock.Parse("fd00:ec2::254/128"), AddressBlock.Parse("fe80::/10")];

    /// <summary>
    /// For an allowlist entry that lies wholly inside a range only the parent's own machine or link can mean, that
    /// range's name (as <see cref="TryClassify(UInt128, out string?)"/> gives it), whether it is the machine's own
    /// (loopback 127.0.0.0/8 and ::1, and the unspecified 0.0.0.0 and ::, which Linux connects to the machine itself)
    /// rather than link-local (169.254.0.0/16, fe80::/10, and fd00:ec2::254: 169.254.169.254 and fd00:ec2::254 are the
    /// instance metadata service), and whether the entry writes it in an IPv6 form that carries an IPv4 address
    /// (<c>64:ff9b::a9fe:a9fe</c>). Null for any other entry, and for one broader than its range
    /// (<see cref="OpenedWithoutNaming"/> names those).
    /// </summary>
    /// <param name="entry">An address entry as a /32 or /128 block, or a network entry's block.</param>
    internal static (string Name, bool Own, bool Embedded)? ParentLocalRange(AddressBlock entry)
    {
        UInt128 first = entry.First;
        int prefixLength = entry.PrefixLength;
        EmbeddedIPv4Form form = GetEmbeddedIPv4(first, out UInt128 ipv4);
        if (form != EmbeddedIPv4Form.None)
        {
            // The entry's prefix in the carried IPv4 address's terms (6to4 carries it in bits 16 to 47).
            int ipv4Bits = prefixLength - (form == EmbeddedIPv4Form.SixToFour ? 16 : 96);
            if (ipv4Bits < 0)
            {
                return null;
            }

            first = ipv4;
            prefixLength = 96 + Math.Min(ipv4Bits, 32);
        }

        bool own = Array.Exists(LoopbackBlocks, block => Inside(block, first, prefixLength));
        if (!own && !Array.Exists(LinkLocalBlocks, block => Inside(block, first, prefixLength)))
        {
            return null;
        }

        return TryClassify(entry.First, out string? name) ? (name, own, form != EmbeddedIPv4Form.None) : null;

        static bool Inside(AddressBlock block, UInt128 first, int prefixLength) => block.Contains(first) && prefixLength >= block.PrefixLength;
    }

    /// <summary>The IPv6 forms that carry an IPv4 address a translator or a tunnel turns them into (IPv4-mapped
    /// addresses are IPv4 values already, <see cref="AddressValue"/>).</summary>
    internal enum EmbeddedIPv4Form
    {
        None,

        /// <summary>IPv4-compatible <c>::a.b.c.d</c> (RFC 4291 §2.5.5.1, deprecated).</summary>
        Compatible,

        /// <summary>NAT64's well-known prefix <c>64:ff9b::a.b.c.d</c> (RFC 6052).</summary>
        Nat64,

        /// <summary>IPv4-translated <c>::ffff:0:a.b.c.d</c> (SIIT, RFC 2765).</summary>
        Translated,

        /// <summary>6to4 <c>2002:aabb:ccdd::/48</c> (RFC 3056): the IPv4 address in bits 16 to 47.</summary>
        SixToFour,
    }

    /// <summary>The IPv4 address <paramref name="value"/> carries, as an IPv4 value, and in which form; none for an
    /// address of another form (and for <c>::</c> and <c>::1</c>, which are not IPv4-compatible).</summary>
    internal static EmbeddedIPv4Form GetEmbeddedIPv4(UInt128 value, out UInt128 ipv4)
    {
        UInt128 upper96 = value >> 32;
        ipv4 = AddressValue.FromIPv4(AddressValue.LowIPv4(SixToFour.Contains(value) ? value >> 80 : value));
        return AddressValue.IsIPv4(value) ? EmbeddedIPv4Form.None
            : upper96 == UInt128.Zero ? (value > UInt128.One ? EmbeddedIPv4Form.Compatible : EmbeddedIPv4Form.None)
            : upper96 == Nat64Prefix >> 32 ? EmbeddedIPv4Form.Nat64
            : upper96 == TranslatedPrefix >> 32 ? EmbeddedIPv4Form.Translated
            : SixToFour.Contains(value) ? EmbeddedIPv4Form.SixToFour
            : EmbeddedIPv4Form.None;
    }

    /// <summary>How a name says an address is an IPv4 one in <paramref name="form"/>, e.g. <c>via NAT64 64:ff9b::/96</c>.</summary>
    internal static string Via(EmbeddedIPv4Form form) => form switch
    {
        EmbeddedIPv4Form.Compatible => ViaCompatible,
        EmbeddedIPv4Form.Nat64 => ViaNat64,
        EmbeddedIPv4Form.Translated => ViaTranslated,
        EmbeddedIPv4Form.SixToFour => Via6to4,
        _ => string.Empty,
    };

    /// <summary>The IPv4 range holding the low 32 bits of <paramref name="value"/>, or -1.</summary>
    private static int IndexOfIPv4Range(UInt128 value)
    {
        UInt128 mapped = AddressValue.FromIPv4(AddressValue.LowIPv4(value));
        for (int i = 0; i < IPv4Ranges.Length; i++)
        {
            if (IPv4Ranges[i].Block.Contains(mapped))
            {
                return i;
            }
        }

        return -1;
    }

    private static (AddressBlock, string, string, string, string, string) IPv4(string cidr, string name) =>
        (AddressBlock.Parse(cidr), name, $"{name} {ViaCompatible}", $"{name} {ViaNat64}", $"{name} {ViaTranslated}", $"{name} {Via6to4}");
}
