using System.Net;
using Egress.Dns;
using Egress.Policy;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Egress.Tests.Dns;

/// <summary>The enclave's check of every answer-section address before an answer reaches the app
/// (<see cref="DnsAnswerLearner.RefuseInternal"/>), against the answers a security review built to get an internal
/// address past it to glibc, musl or Go.</summary>
public sealed class DnsAnswerLearnerTests
{
    private static readonly EgressPolicy Policy = EgressPolicy.Create(true, ["*.x.test"], new AllowlistCache());

    [Test]
    public void AnIPv4MappedAddressOffTheChainIsRefusedAsItsIPv4Value()
    {
        byte[] answer = DnsMessageBuilder.Response(an: 3).Question("a.x.test", type: 28)
            .Aaaa("a.x.test", "::1").Aaaa("other.test", "::ffff:127.0.0.1").Aaaa("a.x.test", "2001:db8::7").ToArray();
        var refused = new HashSet<UInt128>();

        Assert.That(DnsAnswerLearner.RefuseInternal(Policy, "a.x.test", answer, NullLogger.Instance, refused), Is.Null);
        Assert.That(refused, Is.EquivalentTo(new[] { AddressValue.Of(IPAddress.IPv6Loopback), AddressValue.Of(IPAddress.Loopback) }));
    }

    /// <summary>musl passes only the low byte of TYPE to its callback and never reads CLASS: a CAA record (TYPE 257) of
    /// 4 bytes, or an A record of class CH, is an A record to it.</summary>
    [TestCase((ushort)257, (ushort)1, "127.0.0.1", "TYPE 257 CLASS 1 holds the internal address 127.0.0.1")]
    [TestCase((ushort)1, (ushort)3, "127.0.0.1", "TYPE 1 CLASS 3 holds the internal address 127.0.0.1")]
    [TestCase((ushort)(0x100 | 28), (ushort)1, "::1", "TYPE 284 CLASS 1 holds the internal address ::1")]
    [TestCase((ushort)257, (ushort)1, "198.18.0.7", null)]
    public void ARecordMuslTakesForAnAddressRefusesTheAnswerWhenItsAddressIsInternal(ushort type, ushort @class, string address, string? reason)
    {
        byte[] data = IPAddress.Parse(address).GetAddressBytes();
        byte[] answer = DnsMessageBuilder.Response(an: 2).Question("a.x.test")
            .A("a.x.test", "198.18.0.10").Name("a.x.test").Fixed(type, 60, (ushort)data.Length, @class).Bytes(data).ToArray();

        string? refusal = DnsAnswerLearner.RefuseInternal(Policy, "a.x.test", answer, NullLogger.Instance, []);

        Assert.That(refusal, reason is null ? Is.Null : Does.Contain(reason));
    }

    /// <summary>musl skips an owner name byte by byte while each byte is 1 to 127: a label holding a 0 byte ends the
    /// name early for it, and what follows in the label is read as TYPE A, CLASS IN, RDLENGTH 4, 127.0.0.1 (the
    /// review's input: the forwarder saw one TXT record with a binary owner).</summary>
    [TestCase(new byte[] { 0x0F, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3C, 0x00, 0x04, 0x7F, 0x00, 0x00, 0x01 })]
    [TestCase(new byte[] { 0x03, 0x61, 0x80, 0x62 })]
    public void AnOwnerLabelWithAZeroByteOrOneAbove127RefusesTheAnswer(byte[] label)
    {
        byte[] answer = DnsMessageBuilder.Response(an: 1).Question("a.x.test")
            .Bytes(label).Pointer(12).Fixed(16, 60, 1).Bytes(0).ToArray();

        string? refusal = DnsAnswerLearner.RefuseInternal(Policy, "a.x.test", answer, NullLogger.Instance, []);

        Assert.That(refusal, Does.StartWith("an answer-section owner name holds a 0 byte or a byte above 127"));
    }

    [Test]
    public void AnOwnerWithUnderscoresHyphensAndOddPrintableBytesPasses()
    {
        byte[] answer = DnsMessageBuilder.Response(an: 1).Question("a.x.test", type: 12)
            .Cname("1.0/25.2.0.192.in-addr.arpa", "x_y-z.example").ToArray();

        Assert.That(DnsAnswerLearner.RefuseInternal(Policy, "a.x.test", answer, NullLogger.Instance, []), Is.Null);
    }

    /// <summary>From a security review: thousands of internal records cost a list walk each (quadratic) and a Warning
    /// line each. The set is a hash set now, and one answer logs <see cref="DnsAnswerLearner.LoggedRefusalsPerAnswer"/>
    /// refusals one by one (the removal's line counts them all).</summary>
    [Test]
    public void ThousandsOfInternalRecordsAreAllRefusedAndAFewLogged()
    {
        const int Count = 3000;
        DnsMessageBuilder builder = DnsMessageBuilder.Response(an: Count).Question("a.x.test");
        for (int i = 0; i < Count; i++)
        {
            builder = builder.Pointer(12).Fixed(1, 60, 4).Bytes(10, 0, (byte)(i >> 8), (byte)i);
        }

        using var log = new LogCapture();
        var refused = new HashSet<UInt128>();

        Assert.That(DnsAnswerLearner.RefuseInternal(Policy, "a.x.test", builder.ToArray(), log.Factory.CreateLogger("t"), refused), Is.Null);
        Assert.That((refused.Count, log.Values(308, "Address").Count), Is.EqualTo((Count, DnsAnswerLearner.LoggedRefusalsPerAnswer)));
    }
}
