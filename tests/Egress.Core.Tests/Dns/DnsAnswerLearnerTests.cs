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
    [TestCase((ushort)1, (ushort)3, "127.0.0.1", "an answer-section A record of CLASS 3")]
    [TestCase((ushort)1, (ushort)3, "198.18.0.7", "an answer-section A record of CLASS 3")]
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

    /// <summary>From a second review: Go's resolver reads an A or AAAA record of any class, and 4 or 16 bytes where its
    /// data starts whatever RDLENGTH says (past the record, into bytes nothing checked).</summary>
    [TestCase((ushort)1, new byte[] { 0x7F, 0, 0, 1, 0, 0, 0, 0 })]
    [TestCase((ushort)1, new byte[0])]
    [TestCase((ushort)28, new byte[] { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0 })]
    public void AnAddressRecordOfAnotherClassRefusesTheAnswerWhateverItsLength(ushort type, byte[] data)
    {
        byte[] answer = DnsMessageBuilder.Response(an: 1).Question("a.x.test")
            .Pointer(12).Fixed(type, 60, (ushort)data.Length, @class: 3).Bytes(data).Bytes(0x7F, 0, 0, 1).ToArray();

        string? refusal = DnsAnswerLearner.RefuseInternal(Policy, "a.x.test", answer, NullLogger.Instance, []);

        Assert.That(refusal, Does.StartWith($"an answer-section {(type == 1 ? "A" : "AAAA")} record of CLASS 3"));
    }

    /// <summary>SVCB and HTTPS records carry address hints a client may connect to before it resolves the target
    /// (RFC 9460 §7.3); an internal hint (127.0.0.1 reaches the enclave's own listeners, never the proxy) refuses the
    /// answer, and so do parameters that cannot be read.</summary>
    [TestCase(new byte[] { 0, 4, 0, 8, 198, 18, 0, 7, 127, 0, 0, 1 }, "an HTTPS record's ipv4hint holds the internal address 127.0.0.1")]
    [TestCase(new byte[] { 0, 1, 0, 3, 2, (byte)'h', (byte)'2', 0, 6, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }, "an HTTPS record's ipv6hint holds the internal address ::1")]
    [TestCase(new byte[] { 0, 4, 0, 5, 198, 18, 0, 7, 1 }, "an HTTPS record's parameters cannot be read")]
    [TestCase(new byte[] { 0, 4, 0, 9, 198, 18, 0, 7 }, "an HTTPS record's parameters cannot be read")]
    [TestCase(new byte[] { 0, 4 }, "an HTTPS record's parameters cannot be read")]
    [TestCase(new byte[] { 0, 1, 0, 3, 2, (byte)'h', (byte)'2', 0, 4, 0, 4, 198, 18, 0, 7 }, null)]
    [TestCase(new byte[0], null)]
    public void AnInternalAddressHintRefusesTheAnswer(byte[] parameters, string? reason)
    {
        byte[] data = [0, 1, 0, .. parameters]; // priority 1, target "." (the owner itself)
        byte[] answer = DnsMessageBuilder.Response(an: 1).Question("a.x.test", type: 65)
            .Pointer(12).Fixed(65, 60, (ushort)data.Length).Bytes(data).ToArray();

        string? refusal = DnsAnswerLearner.RefuseInternal(Policy, "a.x.test", answer, NullLogger.Instance, []);

        Assert.That(refusal, reason is null ? Is.Null : Does.StartWith(reason));
    }

    [TestCase("127.0.0.1", "the additional section holds the internal address 127.0.0.1")]
    [TestCase("198.18.0.9", null)]
    public void AnInternalAddressBesideAnSrvAnswerRefusesIt(string glue, string? reason)
    {
        byte[] srv = [0, 1, 0, 1, 0x01, 0xBB, 3, (byte)'s', (byte)'r', (byte)'v', 0];
        byte[] answer = DnsMessageBuilder.Response(an: 1, ar: 1).Question("a.x.test", type: 33)
            .Pointer(12).Fixed(33, 60, (ushort)srv.Length).Bytes(srv).A("srv", glue).ToArray();

        string? refusal = DnsAnswerLearner.RefuseInternal(Policy, "a.x.test", answer, NullLogger.Instance, []);

        Assert.That(refusal, reason is null ? Is.Null : Does.StartWith(reason));
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
    /// <summary>From the DNS trial: a full cache evicted addresses without a word, and the app that kept one was denied
    /// "never learned". Learning that evicts now warns (event 326) with the count, at most once a minute.</summary>
    [Test]
    public void LearningThatEvictsWarnsOnceAMinuteWithTheCount()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var policy = EgressPolicy.Create(true, ["*.x.test"], new AllowlistCache(new AllowlistCacheOptions { TimeProvider = time, MaxEntries = 1 }));
        using var log = new LogCapture();
        ILogger logger = log.Factory.CreateLogger("t");
        byte[] Answer(string name, string address) => DnsMessageBuilder.Response(an: 1).Question(name).A(name, address).ToArray();

        DnsAnswerLearner.Learn(policy, "a.x.test", Answer("a.x.test", "198.18.0.1"), logger);
        DnsAnswerLearner.Learn(policy, "b.x.test", Answer("b.x.test", "198.18.0.2"), logger);
        DnsAnswerLearner.Learn(policy, "c.x.test", Answer("c.x.test", "198.18.0.3"), logger);
        time.Advance(AllowlistCache.EvictionWarningInterval);
        DnsAnswerLearner.Learn(policy, "d.x.test", Answer("d.x.test", "198.18.0.4"), logger);
        DnsAnswerLearner.Learn(policy, "e.x.test", Answer("e.x.test", "198.18.0.5"), logger);

        Assert.Multiple(() =>
        {
            Assert.That(log.Values(326, "Evicted"), Is.EqualTo(new[] { "1", "2" }), "one line for b's learning, one a minute later for d's; none for c's or e's");
            Assert.That(log.Values(326, "MaxEntries"), Is.EqualTo(new[] { "1", "1" }));
        });
    }

    /// <summary>A robustness trial: 8 other allowed names resolved to one address took an allowed name's place without
    /// a word, and the app that kept the address for it was denied by the names left. Learning that displaces a name
    /// still allowed now warns (event 329) with the name, the address, the name that took its place and the count, at
    /// most once a minute; replacing a name past its allowance, which denies nothing, does not.</summary>
    [Test]
    public void LearningThatDisplacesANameStillAllowedWarnsOnceAMinute()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var policy = EgressPolicy.Create(true, ["*.x.test"], new AllowlistCache(new AllowlistCacheOptions { TimeProvider = time, Grace = TimeSpan.Zero }));
        using var log = new LogCapture();
        ILogger logger = log.Factory.CreateLogger("t");
        byte[] Answer(string name, uint ttl) => DnsMessageBuilder.Response(an: 1).Question(name).A(name, "198.18.0.11", ttl).ToArray();

        DnsAnswerLearner.Learn(policy, "short.x.test", Answer("short.x.test", 30), logger); // past its allowance below
        DnsAnswerLearner.Learn(policy, "api.x.test", Answer("api.x.test", 300), logger);
        for (int i = 1; i <= 6; i++)
        {
            DnsAnswerLearner.Learn(policy, $"n{i}.x.test", Answer($"n{i}.x.test", 300), logger);
        }

        time.Advance(TimeSpan.FromSeconds(31));
        DnsAnswerLearner.Learn(policy, "n7.x.test", Answer("n7.x.test", 300), logger); // takes short's place: no line
        bool allowedBefore = policy.Cache.Learned(TimeSpan.Zero).Any(learned => learned.Name == "api.x.test");
        time.Advance(TimeSpan.FromSeconds(1));
        DnsAnswerLearner.Learn(policy, "n8.x.test", Answer("n8.x.test", 300), logger); // takes api's place: the line
        time.Advance(TimeSpan.FromSeconds(1));
        DnsAnswerLearner.Learn(policy, "n9.x.test", Answer("n9.x.test", 300), logger); // takes n1's: counted, not said yet
        time.Advance(AllowlistCache.EvictionWarningInterval);
        DnsAnswerLearner.Learn(policy, "n10.x.test", Answer("n10.x.test", 400), logger); // takes n2's: said, with n9's

        Assert.Multiple(() =>
        {
            Assert.That(allowedBefore, Is.True, "api.x.test was still learned for the address before n8");
            Assert.That(log.Values(329, "Name"), Is.EqualTo(new[] { "api.x.test", "n2.x.test" }), "once a minute: the first, then the last one");
            Assert.That(log.Values(329, "By"), Is.EqualTo(new[] { "n8.x.test", "n10.x.test" }));
            Assert.That(log.Values(329, "Address"), Is.EqualTo(new[] { "198.18.0.11", "198.18.0.11" }));
            Assert.That(log.Values(329, "Displaced"), Is.EqualTo(new[] { "1", "2" }));
            Assert.That(policy.Cache.Learned(TimeSpan.Zero).Select(learned => learned.Name), Does.Not.Contain("api.x.test").And.Contain("n8.x.test"));
        });
    }
}
