using System.Buffers.Binary;
using System.Net;
using Egress.Policy;

namespace Egress.Tests.Policy;

public sealed class InternalRangesTests
{
    [TestCase("127.0.0.1", "loopback 127.0.0.0/8")]
    [TestCase("127.255.255.254", "loopback 127.0.0.0/8")]
    [TestCase("0.0.0.0", "unspecified 0.0.0.0/8")]
    [TestCase("0.1.2.3", "unspecified 0.0.0.0/8")]
    [TestCase("169.254.169.254", "link-local 169.254.0.0/16 (instance metadata)")]
    [TestCase("169.254.170.2", "link-local 169.254.0.0/16 (instance metadata)")]
    [TestCase("169.254.0.0", "link-local 169.254.0.0/16 (instance metadata)")]
    [TestCase("10.0.0.0", "private 10.0.0.0/8")]
    [TestCase("10.255.255.255", "private 10.0.0.0/8")]
    [TestCase("172.16.0.1", "private 172.16.0.0/12")]
    [TestCase("172.31.255.255", "private 172.16.0.0/12")]
    [TestCase("192.168.1.1", "private 192.168.0.0/16")]
    [TestCase("100.64.0.1", "shared CGNAT 100.64.0.0/10")]
    [TestCase("100.127.255.255", "shared CGNAT 100.64.0.0/10")]
    [TestCase("100.100.100.200", "shared CGNAT 100.64.0.0/10")]
    // A security review: IANA's special-purpose blocks that are not globally reachable.
    [TestCase("192.0.0.170", "IETF protocol assignments 192.0.0.0/24 (DS-Lite, NAT64 discovery; not globally reachable)")]
    [TestCase("::ffff:192.0.0.1", "IETF protocol assignments 192.0.0.0/24 (DS-Lite, NAT64 discovery; not globally reachable)")]
    [TestCase("100::1", "discard-only 100::/64")]
    [TestCase("5f00::1", "SRv6 SIDs 5f00::/16 (not globally reachable)")]
    // Named by a red-team trial: Teredo carries a client's IPv4 address (inverted), 169.254.169.254 here.
    [TestCase("2001:0:4136:e378:8000:63bf:5601:5601", "Teredo 2001::/32 (UDP-tunnelled to the IPv4 address it carries; not globally reachable)")]
    [TestCase("2001::1", "Teredo 2001::/32 (UDP-tunnelled to the IPv4 address it carries; not globally reachable)")]
    [TestCase("224.0.0.1", "multicast 224.0.0.0/4")]
    [TestCase("239.255.255.250", "multicast 224.0.0.0/4")]
    [TestCase("240.0.0.1", "reserved 240.0.0.0/4")]
    [TestCase("255.255.255.254", "reserved 240.0.0.0/4")]
    [TestCase("255.255.255.255", "broadcast 255.255.255.255")]
    [TestCase("::", "unspecified ::")]
    [TestCase("::1", "loopback ::1")]
    [TestCase("fe80::1", "link-local fe80::/10")]
    [TestCase("febf:ffff::1", "link-local fe80::/10")]
    [TestCase("fec0::1", "site-local fec0::/10 (deprecated)")]
    [TestCase("fd00:ec2::254", "instance metadata fd00:ec2::254 (unique local fc00::/7)")]
    [TestCase("fd00:ec2::253", "unique local fc00::/7")]
    [TestCase("fc00::1", "unique local fc00::/7")]
    [TestCase("fdff:ffff::1", "unique local fc00::/7")]
    [TestCase("ff02::1", "multicast ff00::/8")]
    [TestCase("ff0e::1", "multicast ff00::/8")]
    [TestCase("::ffff:127.0.0.1", "loopback 127.0.0.0/8")]
    [TestCase("::ffff:169.254.169.254", "link-local 169.254.0.0/16 (instance metadata)")]
    [TestCase("::ffff:10.1.2.3", "private 10.0.0.0/8")]
    [TestCase("::ffff:0.0.0.0", "unspecified 0.0.0.0/8")]
    [TestCase("::127.0.0.1", "loopback 127.0.0.0/8 via IPv4-compatible ::/96")]
    [TestCase("::169.254.169.254", "link-local 169.254.0.0/16 (instance metadata) via IPv4-compatible ::/96")]
    [TestCase("::192.168.0.1", "private 192.168.0.0/16 via IPv4-compatible ::/96")]
    [TestCase("::0.0.0.2", "unspecified 0.0.0.0/8 via IPv4-compatible ::/96")]
    [TestCase("64:ff9b::127.0.0.1", "loopback 127.0.0.0/8 via NAT64 64:ff9b::/96")]
    [TestCase("64:ff9b::169.254.169.254", "link-local 169.254.0.0/16 (instance metadata) via NAT64 64:ff9b::/96")]
    [TestCase("64:ff9b::10.0.0.1", "private 10.0.0.0/8 via NAT64 64:ff9b::/96")]
    [TestCase("64:ff9b:1::10.0.0.1", "local-use NAT64 64:ff9b:1::/48 (not globally reachable)")]
    [TestCase("64:ff9b:1::8.8.8.8", "local-use NAT64 64:ff9b:1::/48 (not globally reachable)")]
    [TestCase("::ffff:0:169.254.169.254", "link-local 169.254.0.0/16 (instance metadata) via IPv4-translated ::ffff:0:0:0/96")]
    [TestCase("2002:7f00:1::", "loopback 127.0.0.0/8 via 6to4 2002::/16")]
    [TestCase("2002:a9fe:a9fe::1", "link-local 169.254.0.0/16 (instance metadata) via 6to4 2002::/16")]
    public void ClassifiesInternal(string address, string rangeName)
    {
        bool isInternal = InternalRanges.TryClassify(IPAddress.Parse(address), out string? name);

        Assert.Multiple(() =>
        {
            Assert.That(isInternal, Is.True);
            Assert.That(name, Is.EqualTo(rangeName));
        });
    }

    [TestCase("1.1.1.1")]
    [TestCase("8.8.8.8")]
    [TestCase("9.255.255.255")]
    [TestCase("11.0.0.0")]
    [TestCase("126.255.255.255")]
    [TestCase("128.0.0.0")]
    [TestCase("169.253.255.255")]
    [TestCase("169.255.0.0")]
    [TestCase("172.15.255.255")]
    [TestCase("172.32.0.0")]
    [TestCase("192.167.255.255")]
    [TestCase("192.169.0.0")]
    [TestCase("100.63.255.255")]
    [TestCase("100.128.0.0")]
    [TestCase("223.255.255.255")]
    [TestCase("1.0.0.0")]
    [TestCase("198.18.0.10")]
    [TestCase("198.19.255.255")]
    [TestCase("192.0.2.1")]
    [TestCase("198.51.100.7")]
    [TestCase("203.0.113.9")]
    [TestCase("2001:db8::1")]
    [TestCase("2606:4700::1111")]
    [TestCase("fbff:ffff::1")]
    [TestCase("fe00::1")]
    [TestCase("::2:0:0:1")]
    [TestCase("::ffff:198.18.0.10")]
    [TestCase("::ffff:8.8.8.8")]
    [TestCase("::8.8.8.8")]
    [TestCase("64:ff9b::8.8.8.8")]
    [TestCase("::ffff:0:8.8.8.8")]
    [TestCase("2002:808:808::1")]
    [TestCase("2003::1")]
    [TestCase("2001:1::1")]
    [TestCase("2001:4860:4860::8888")]
    public void ClassifiesOrdinary(string address)
    {
        bool isInternal = InternalRanges.TryClassify(IPAddress.Parse(address), out string? name);

        Assert.Multiple(() =>
        {
            Assert.That(isInternal, Is.False);
            Assert.That(name, Is.Null);
        });
    }

    [Test]
    public void RejectsNull() => Assert.Throws<ArgumentNullException>(() => InternalRanges.TryClassify(null!, out _));

    private static readonly IPNetwork[] IPv4Internal =
    [
        IPNetwork.Parse("0.0.0.0/8"), IPNetwork.Parse("10.0.0.0/8"), IPNetwork.Parse("100.64.0.0/10"),
        IPNetwork.Parse("127.0.0.0/8"), IPNetwork.Parse("169.254.0.0/16"), IPNetwork.Parse("172.16.0.0/12"),
        IPNetwork.Parse("192.168.0.0/16"), IPNetwork.Parse("224.0.0.0/4"), IPNetwork.Parse("240.0.0.0/4"),
    ];

    [Test]
    public void IPv4AgreesWithReferenceNetworksInEveryForm()
    {
        var samples = new List<uint>();
        foreach (IPNetwork network in IPv4Internal)
        {
            uint first = BinaryPrimitives.ReadUInt32BigEndian(network.BaseAddress.GetAddressBytes());
            uint last = first | (uint)((1UL << (32 - network.PrefixLength)) - 1);
            samples.AddRange([first - 1, first, first + 1, last - 1, last, last + 1]);
        }

        var random = new Random(20240611);
        for (int i = 0; i < 100_000; i++)
        {
            samples.Add((uint)random.NextInt64(0, 1L << 32));
        }

        List<uint> disagreements = samples.FindAll(raw => !AgreesWithReference(raw));

        Assert.That(disagreements, Is.Empty);
    }

    private static bool AgreesWithReference(uint raw)
    {
        var address = new IPAddress([(byte)(raw >> 24), (byte)(raw >> 16), (byte)(raw >> 8), (byte)raw]);
        bool expected = Array.Exists(IPv4Internal, network => network.Contains(address));
        byte[] v4 = address.GetAddressBytes();
        byte[] compatible = new byte[16];
        byte[] nat64 = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        v4.CopyTo(compatible, 12);
        v4.CopyTo(nat64, 12);
        bool compatibleExpected = expected || raw <= 1; // ::0.0.0.0 and ::0.0.0.1 are :: and ::1
        return InternalRanges.TryClassify(address, out _) == expected
            && InternalRanges.TryClassify(address.MapToIPv6(), out _) == expected
            && InternalRanges.TryClassify(new IPAddress(compatible), out _) == compatibleExpected
            && InternalRanges.TryClassify(new IPAddress(nat64), out _) == expected;
    }

    [Test]
    public void DoesNotAllocate()
    {
        IPAddress[] addresses =
        [
            IPAddress.Parse("169.254.169.254"), IPAddress.Parse("8.8.8.8"), IPAddress.Parse("::ffff:10.0.0.1"),
            IPAddress.Parse("fd00:ec2::254"), IPAddress.Parse("64:ff9b::127.0.0.1"), IPAddress.Parse("2001:db8::1"),
        ];
        int rounds = 0;
        int internalCount = 0;

        long allocated = Allocations.LeastPerRound(() =>
        {
            rounds++;
            for (int i = 0; i < 100; i++)
            {
                foreach (IPAddress address in addresses)
                {
                    internalCount += InternalRanges.TryClassify(address, out _) ? 1 : 0;
                }
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(allocated, Is.Zero);
            Assert.That(internalCount, Is.EqualTo(rounds * 400));
        });
    }

    [TestCase("0.0.0.0/1", new[] { "loopback 127.0.0.0/8", "unspecified 0.0.0.0/8", "private 10.0.0.0/8", "shared CGNAT 100.64.0.0/10" })]
    [TestCase("128.0.0.0/1", new[] { "broadcast 255.255.255.255", "link-local 169.254.0.0/16 (instance metadata)", "private 172.16.0.0/12", "private 192.168.0.0/16", "IETF protocol assignments 192.0.0.0/24 (DS-Lite, NAT64 discovery; not globally reachable)", "multicast 224.0.0.0/4", "reserved 240.0.0.0/4" })]
    [TestCase("169.254.0.0/15", new[] { "link-local 169.254.0.0/16 (instance metadata)" })]
    [TestCase("2000::/3", new[] { "Teredo 2001::/32 (UDP-tunnelled to the IPv4 address it carries; not globally reachable)", "6to4 2002::/16 (every internal IPv4 range in that form)" })]
    [TestCase("2001::/16", new[] { "Teredo 2001::/32 (UDP-tunnelled to the IPv4 address it carries; not globally reachable)" })]
    [TestCase("fd00::/8", new[] { "instance metadata fd00:ec2::254 (unique local fc00::/7)" })]
    // From a red-team trial: an entry that is a form's block exactly opened every internal IPv4 range in it unwarned.
    [TestCase("64:ff9b::/96", new[] { "NAT64 64:ff9b::/96 (every internal IPv4 range in that form)" })]
    [TestCase("2002::/16", new[] { "6to4 2002::/16 (every internal IPv4 range in that form)" })]
    [TestCase("64:ff9b::800:0/101", new[] { "private 10.0.0.0/8 via NAT64 64:ff9b::/96" })]
    [TestCase("2002:a800::/21", new[] { "link-local 169.254.0.0/16 (instance metadata) via 6to4 2002::/16", "private 172.16.0.0/12 via 6to4 2002::/16" })]
    [TestCase("fc00::/7", new[] { "instance metadata fd00:ec2::254 (unique local fc00::/7)" }, TestName = "Naming the unique local range still opens the instance metadata address inside it")]
    public void ABroaderNetworkOpensTheInternalRangesInsideIt(string network, string[] expected) =>
        Assert.That(InternalRanges.OpenedWithoutNaming(IPNetwork.Parse(network)), Is.EqualTo(expected));

    [TestCase("10.0.0.0/8")]
    [TestCase("10.1.0.0/16")]
    [TestCase("169.254.169.254/32")]
    [TestCase("198.18.0.0/15")]
    [TestCase("8.0.0.0/7")]
    [TestCase("2001:db8::/32")]
    [TestCase("64:ff9b::a9fe:0/112")]
    [TestCase("2002:a00::/24")]
    [TestCase("64:ff9b::c612:0/111")]
    public void ANetworkThatNamesItsRangeOrMissesThemAllOpensNothingUnnamed(string network) =>
        Assert.That(InternalRanges.OpenedWithoutNaming(IPNetwork.Parse(network)), Is.Empty);

    [Test]
    public void EverythingOpensEveryRangeOfItsFamily()
    {
        List<string> v4 = InternalRanges.OpenedWithoutNaming(IPNetwork.Parse("0.0.0.0/0"));
        List<string> v6 = InternalRanges.OpenedWithoutNaming(IPNetwork.Parse("::/0"));

        Assert.Multiple(() =>
        {
            Assert.That(v4, Has.Count.EqualTo(11));
            Assert.That(v4, Has.Member("link-local 169.254.0.0/16 (instance metadata)"));
            Assert.That(v6, Has.Count.EqualTo(15), "11 IPv6 ranges and 4 forms that embed IPv4");
            Assert.That(v6, Has.Member("loopback ::1"));
            Assert.That(v6, Has.Member("IPv4-compatible ::/96 (every internal IPv4 range in that form)"));
            Assert.That(v6, Has.None.Contains("127.0.0.0/8"), "an IPv6 entry never matches IPv4 destinations");
        });
    }
}
