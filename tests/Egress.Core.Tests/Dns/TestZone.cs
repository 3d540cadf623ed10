using System.Globalization;

namespace Egress.Tests.Dns;

/// <summary>The canned records the fake upstreams answer in the forwarder tests.</summary>
internal static class TestZone
{
    public const int BigRecordCount = 40;

    /// <summary>More loopback records than the removal once kept room for (64), which left such an answer whole.</summary>
    public const int RebindRecordCount = 300;

    /// <summary>One CNAME more than the learner follows (<c>DnsMessage.MaxCnameChainLength</c>).</summary>
    public const int LongChainLinks = 17;

    public static FakeAnswer Answer(string name, ushort type)
    {
        if (name.StartsWith('n') && name.EndsWith(".x.test", StringComparison.Ordinal)
            && int.TryParse(name.AsSpan(1, name.Length - 8), NumberStyles.None, CultureInfo.InvariantCulture, out int n))
        {
            return FakeAnswer.Of(FakeRecord.A(name, AddressOf(n)));
        }

        return (name, type) switch
        {
            ("a.x.test", 28) => FakeAnswer.Of(FakeRecord.Aaaa("a.x.test", "2001:db8::10")),
            ("a.x.test", _) => FakeAnswer.Of(FakeRecord.A("a.x.test", "198.18.0.10")),
            ("api.y.test", _) => FakeAnswer.Of(FakeRecord.A("api.y.test", "198.18.0.11")),
            ("c.x.test", _) => FakeAnswer.Of(FakeRecord.Cname("c.x.test", "outside.z.test", 120), FakeRecord.A("outside.z.test", "198.18.0.20", 60)),
            ("mixed.x.test", 28) => FakeAnswer.Of(FakeRecord.Aaaa("mixed.x.test", "fd00::5"), FakeRecord.Aaaa("mixed.x.test", "2001:db8::31")),
            ("mixed.x.test", _) => FakeAnswer.Of(FakeRecord.A("mixed.x.test", "10.0.0.5"), FakeRecord.A("mixed.x.test", "198.18.0.31")),
            ("meta.x.test", _) => FakeAnswer.Of(FakeRecord.A("meta.x.test", "169.254.169.254")),
            ("rebind.x.test", _) => new FakeAnswer([.. Enumerable.Range(1, RebindRecordCount).Select(i => FakeRecord.A("rebind.x.test", $"127.0.{i / 250}.{1 + (i % 250)}"))]),
            // MB (RFC 1035), a type whose data may hold a compressed name (RFC 3597 §4) and that the address removal
            // does not read: the answer cannot be rewritten.
            ("opaque.x.test", _) => FakeAnswer.Of(FakeRecord.A("opaque.x.test", "127.0.0.1"), new FakeRecord("opaque.x.test", 7, "\u0001a\u0000")),
            // An address record owned by a name off the question's CNAME chain: glibc skips it, musl takes it.
            ("offchain.x.test", _) => FakeAnswer.Of(FakeRecord.A("offchain.x.test", "198.18.0.32"), FakeRecord.A("elsewhere.z.test", "127.0.0.1")),
            // ::1 on the chain, its IPv4-mapped twin of 127.0.0.1 off it, beside a public address.
            ("mapped.x.test", _) => FakeAnswer.Of(
                FakeRecord.Aaaa("mapped.x.test", "::1"), FakeRecord.Aaaa("other.z.test", "::ffff:127.0.0.1"), FakeRecord.Aaaa("mapped.x.test", "2001:db8::33")),
            // A chain one link longer than the learner follows, ending at loopback.
            ("longchain.x.test", _) => new FakeAnswer([
                .. Enumerable.Range(0, LongChainLinks).Select(i => FakeRecord.Cname(i == 0 ? "longchain.x.test" : $"l{i}.z.test", $"l{i + 1}.z.test")),
                FakeRecord.A($"l{LongChainLinks}.z.test", "127.0.0.1")]),
            // TTLs of 30 days and 2^31-1 s beside one of a minute.
            ("longttl.x.test", _) => FakeAnswer.Of(
                FakeRecord.Cname("longttl.x.test", "long.z.test", 2_592_000), FakeRecord.A("long.z.test", "198.18.0.34", int.MaxValue), FakeRecord.A("long.z.test", "198.18.0.35", 60)),
            // An A record of five bytes: the answer section cannot be read.
            ("malformed.x.test", _) => FakeAnswer.Of(FakeRecord.A("malformed.x.test", "198.18.0.33"), new FakeRecord("malformed.x.test", 1, "\u007f\u0000\u0000\u0001\u0000", Raw: true)),
            ("big.x.test", _) => new FakeAnswer([.. Enumerable.Range(1, BigRecordCount).Select(i => FakeRecord.A("big.x.test", $"198.18.1.{i}"))]),
            ("slow.x.test", _) => FakeAnswer.Silence,
            ("rewritten.x.test", _) => new FakeAnswer([FakeRecord.A("rewritten.x.test", "198.18.0.31")], OtherType: true),
            ("spoof.x.test", _) => new FakeAnswer([FakeRecord.A("spoof.x.test", "198.18.0.30")], SpoofFirst: true),
            ("a.deep.test", _) => FakeAnswer.Of(FakeRecord.A("a.deep.test", "198.18.0.40")),
            ("b.a.deep.test", _) => FakeAnswer.Of(FakeRecord.A("b.a.deep.test", "198.18.0.41")),
            _ => new FakeAnswer([], Rcode: 3),
        };
    }

    public static string AddressOf(int n) => $"198.18.{2 + (n / 250)}.{1 + (n % 250)}";
}
