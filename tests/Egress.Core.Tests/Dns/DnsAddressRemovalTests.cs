using System.Net;
using Egress.Dns.Wire;
using Egress.Policy;
using Egress.Tests.Dns.Vectors;

namespace Egress.Tests.Dns;

/// <summary>
/// <see cref="DnsAddressRemoval"/>: the answer-section A/AAAA records of given addresses leave the message, every
/// compression pointer past them moves back, and a message it cannot rewrite safely stays byte for byte as it was.
/// </summary>
public sealed class DnsAddressRemovalTests
{
    private static readonly IPAddress Internal = IPAddress.Parse("10.0.0.5");

    /// <summary>The removed record comes first; a later record's owner points at a name written after it, so that
    /// pointer must move back by the removed record's length. The result must equal the message built without it.</summary>
    [Test]
    public void ARemovedRecordLeavesTheMessageAsIfItHadNeverBeenThere()
    {
        byte[] message = Mixed(withInternal: true, out _);
        byte[] expected = Mixed(withInternal: false, out _);

        int length = Remove(message, [Internal], out int removed);

        Assert.Multiple(() =>
        {
            Assert.That(removed, Is.EqualTo(1));
            Assert.That(Convert.ToHexString(message, 0, length), Is.EqualTo(Convert.ToHexString(expected)));
            var addresses = new List<DnsAddressRecord>();
            Assert.That(DnsMessage.ExtractAddresses(message.AsSpan(0, length), addresses), Is.EqualTo(DnsParseError.None));
            Assert.That(addresses.Select(record => record.Address.ToString()), Is.EqualTo(new[] { "198.18.0.31" }));
        });
    }

    /// <summary>AD (RFC 4035 §3.2.3) vouches for the RRsets the upstream validated; once one is cut, the message must
    /// not say so to a stub that trusts AD. Before, AD stayed set. An answer left whole keeps it.</summary>
    [TestCase(true, false)]
    [TestCase(false, true)]
    public void TheAuthenticDataBitIsClearedExactlyWhenARecordIsRemoved(bool withInternal, bool adAfter)
    {
        byte[] message = Mixed(withInternal, out _);
        message[3] |= (byte)DnsHeader.AuthenticDataFlag;
        byte flagsByte = message[2];

        int length = Remove(message, [Internal], out int removed);

        Assert.That(DnsHeader.TryRead(message.AsSpan(0, length), out DnsHeader header), Is.True);
        Assert.That((removed, header.AuthenticData, header.RecursionAvailable, message[2]),
            Is.EqualTo((withInternal ? 1 : 0, adAfter, true, flagsByte)));
    }

    /// <summary>The list of records to remove had room for 64: an answer with more was left whole (a security review).</summary>
    [TestCase(64)]
    [TestCase(65)]
    [TestCase(1000)]
    public void EveryOneOfManyRecordsGoes(int count)
    {
        DnsMessageBuilder builder = DnsMessageBuilder.Response(an: (ushort)(count + 1)).Question("r.test");
        for (int i = 0; i < count; i++)
        {
            builder = builder.Pointer(12).Fixed(1, 60, 4).Bytes(127, 0, (byte)(i / 250), (byte)(1 + (i % 250)));
        }

        byte[] message = builder.Pointer(12).Fixed(1, 60, 4).Bytes(198, 18, 0, 7).ToArray();
        IPAddress[] refused = [.. Enumerable.Range(0, count).Select(i => new IPAddress([127, 0, (byte)(i / 250), (byte)(1 + (i % 250))]))];

        int length = Remove(message, refused, out int removed);

        var addresses = new List<DnsAddressRecord>();
        Assert.That(DnsMessage.ExtractAddresses(message.AsSpan(0, length), addresses), Is.EqualTo(DnsParseError.None));
        Assert.That((removed, addresses.Select(record => record.Address.ToString())), Is.EqualTo((count, new[] { "198.18.0.7" })));
    }

    [Test]
    public void EveryRecordOfTheAddressGoesAndOthersStayInTheirOrder()
    {
        byte[] message = DnsMessageBuilder.Response(an: 4)
            .Question("m.test", type: 28)
            .Pointer(12).Fixed(28, 60, 16).Bytes(IPAddress.Parse("fd00::5").GetAddressBytes())
            .Pointer(12).Fixed(28, 60, 16).Bytes(IPAddress.Parse("2001:db8::31").GetAddressBytes())
            .Pointer(12).Fixed(28, 60, 16).Bytes(IPAddress.Parse("fd00::5").GetAddressBytes())
            .Pointer(12).Fixed(28, 60, 16).Bytes(IPAddress.Parse("2001:db8::32").GetAddressBytes())
            .ToArray();

        int length = Remove(message, [IPAddress.Parse("fd00::5")], out int removed);

        var addresses = new List<DnsAddressRecord>();
        Assert.That(DnsMessage.ExtractAddresses(message.AsSpan(0, length), addresses), Is.EqualTo(DnsParseError.None));
        Assert.That((removed, addresses.Select(record => record.Address.ToString())), Is.EqualTo((2, new[] { "2001:db8::31", "2001:db8::32" })));
    }

    /// <summary>A real dnsmasq answer (www.b.test CNAME c.test, c.test A 198.18.0.11): the CNAME stays, pointing as before.</summary>
    [Test]
    public void TheLastAddressOfARealAnswerGoesAndItsCnameStays()
    {
        byte[] message = Convert.FromHexString(DnsVectors.WwwBTestAResponse);

        int length = Remove(message, [IPAddress.Parse("198.18.0.11")], out int removed);

        Assert.That((removed, Convert.ToHexString(message, 0, length)), Is.EqualTo(
            (1, "10028580000100010000000003777777016204746573740000010001C00C000500010000007800080163047465737400")));
    }

    [Test]
    public void AnAddressInTheAdditionalSectionIsNotTouched()
    {
        byte[] message = DnsMessageBuilder.Response(an: 1, ar: 1)
            .Question("m.test").Pointer(12).Fixed(1, 60, 4).Bytes(198, 18, 0, 31)
            .Name("ns.m.test").Fixed(1, 60, 4).Bytes(10, 0, 0, 5)
            .ToArray();
        string before = Convert.ToHexString(message);

        int length = Remove(message, [Internal], out int removed);

        Assert.That((removed, length, Convert.ToHexString(message)), Is.EqualTo((0, message.Length, before)));
    }

    [TestCase("a pointer into the removed record")]
    [TestCase("a record type whose data may hold a compressed name")]
    [TestCase("bytes after the last record")]
    [TestCase("two questions")]
    [TestCase("a truncated record")]
    [TestCase("no such address")]
    public void AMessageThatCannotBeRewrittenSafelyStaysAsItIs(string reason)
    {
        var builder = reason switch
        {
            "two questions" => DnsMessageBuilder.Response(qd: 2, an: 2).Question("m.test").Question("n.test"),
            _ => DnsMessageBuilder.Response(an: 2).Question("m.test"),
        };
        builder.Name("inner.m.test").Fixed(1, 60, 4).Bytes(10, 0, 0, 5); // at offset 24 (one question) or 36
        byte[] message = reason switch
        {
            "a pointer into the removed record" => builder.Pointer(24).Fixed(1, 60, 4).Bytes(198, 18, 0, 31).ToArray(),
            "a record type whose data may hold a compressed name" => builder.Pointer(12).Fixed(13 /* HINFO: not read */, 60, 2).Bytes(0, 0).ToArray(),
            "bytes after the last record" => builder.Pointer(12).Fixed(1, 60, 4).Bytes(198, 18, 0, 31).Bytes(0xC0).ToArray(),
            "a truncated record" => builder.Pointer(12).Fixed(1, 60, 4).Bytes(198, 18).ToArray(),
            _ => builder.Pointer(12).Fixed(1, 60, 4).Bytes(198, 18, 0, 31).ToArray(),
        };
        string before = Convert.ToHexString(message);

        int length = Remove(message, [reason == "no such address" ? IPAddress.Parse("10.0.0.6") : Internal], out int removed);

        Assert.That((removed, length, Convert.ToHexString(message)), Is.EqualTo((0, message.Length, before)));
    }

    /// <summary>Random mutations of messages with pointers before and after the removed record: never an exception;
    /// either the message stays whole, or what is left parses as well as the mutated input did and holds no record of
    /// the removed address in its answer section.</summary>
    [Test]
    public void MutatedMessagesAreLeftWholeOrRewrittenIntoMessagesThatStillParse()
    {
        byte[] seed = Mixed(withInternal: true, out _);
        var random = new Random(20261202);
        int rewritten = 0, left = 0;
        for (int i = 0; i < 20_000; i++)
        {
            byte[] input = [.. seed];
            for (int flips = random.Next(0, 4); flips > 0; flips--)
            {
                input[random.Next(12, input.Length)] = (byte)random.Next(256);
            }

            byte[] copy = [.. input];
            int length = Remove(input, [Internal], out int removed);
            if (removed == 0)
            {
                Assert.That(input, Is.EqualTo(copy), "left whole");
                left++;
                continue;
            }

            rewritten++;
            var before = new List<DnsAddressRecord>();
            var after = new List<DnsAddressRecord>();
            DnsParseError parsedBefore = DnsMessage.ExtractAddresses(copy, before);
            DnsParseError parsedAfter = DnsMessage.ExtractAddresses(input.AsSpan(0, length), after);
            Assert.That(parsedAfter == DnsParseError.None || parsedBefore != DnsParseError.None, Is.True, $"{Convert.ToHexString(copy)} → {parsedAfter}");
            Assert.That(after.Select(record => record.Address), Does.Not.Contain(Internal), Convert.ToHexString(copy));
            if (parsedBefore == DnsParseError.None)
            {
                Assert.That(after.Select(record => record.Address), Is.EqualTo(before.Select(record => record.Address).Where(address => !address.Equals(Internal))));
            }
        }

        Assert.That((rewritten > 0, left > 0), Is.EqualTo((true, true)), $"rewritten {rewritten}, left {left}");
    }

    /// <summary>From a security review: the refused addresses were compared as <see cref="IPAddress"/>es, which never
    /// match across families, so <c>AAAA ::ffff:127.0.0.1</c> stayed when 127.0.0.1 was refused in its IPv4 form (an
    /// IPv6 socket connects to it as 127.0.0.1). They are compared as address values now.</summary>
    [TestCase("127.0.0.1")]
    [TestCase("::ffff:127.0.0.1")]
    public void AnIPv4MappedRecordGoesWithItsIPv4Address(string refusedAs)
    {
        byte[] message = DnsMessageBuilder.Response(an: 3).Question("m.test", type: 28)
            .Aaaa("m.test", "::ffff:127.0.0.1").A("other.test", "127.0.0.1").Aaaa("m.test", "2001:db8::7").ToArray();

        int length = Remove(message, [IPAddress.Parse(refusedAs)], out int removed);

        var left = new List<DnsAddressRecord>();
        Assert.That(DnsMessage.ExtractAddresses(message.AsSpan(0, length), left), Is.EqualTo(DnsParseError.None));
        Assert.That((removed, left.Select(record => record.Address.ToString()).Single()), Is.EqualTo((2, "2001:db8::7")));
    }

    /// <summary>Removes <paramref name="addresses"/> as the forwarder does (by address value).</summary>
    private static int Remove(Span<byte> message, IEnumerable<IPAddress> addresses, out int removed) =>
        DnsAddressRemoval.Remove(message, addresses.Select(AddressValue.Of).ToHashSet(), out removed);

    /// <summary>m.test A: [the internal A], m.test CNAME alias.m.test (written whole), alias.m.test A 198.18.0.31
    /// (owner: a pointer to the CNAME's target), then an SOA in the authority section whose names point at the
    /// question and the CNAME target.</summary>
    private static byte[] Mixed(bool withInternal, out int targetOffset)
    {
        var builder = DnsMessageBuilder.Response(an: (ushort)(withInternal ? 3 : 2), ns: 1).Question("m.test");
        if (withInternal)
        {
            builder.Pointer(12).Fixed(1, 60, 4).Bytes(10, 0, 0, 5);
        }

        builder.Pointer(12).Fixed(5, 60, 14);
        targetOffset = builder.Offset;
        builder.Name("alias.m.test")
            .Pointer(targetOffset).Fixed(1, 60, 4).Bytes(198, 18, 0, 31)
            .Pointer(12).Fixed(6, 60, 2 + 2 + 2 + 20).Bytes(1, (byte)'n').Pointer(targetOffset).Pointer(12).UInt32(1).UInt32(2).UInt32(3).UInt32(4).UInt32(5);
        return builder.ToArray();
    }
}
