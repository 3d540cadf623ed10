using System.Buffers;
using System.Text;
using Egress.Tunnel;

namespace Egress.Tests.Tunnel;

/// <summary>
/// The denial report's records (docs/tunnel-protocol.md, "Denial reports"): the golden vector, round trips, every
/// record cut at every byte, and hostile bytes, which the parent reads from the enclave.
/// </summary>
public sealed class DenialReportCodecTests
{
    // Golden vector of docs/tunnel-protocol.md: 12 connections to 198.51.100.7:443, never_learned, over 10 s.
    private const string GoldenHex =
        "01 0000000c 000a 0d 6e657665725f6c6561726e6564 10 3139382e35312e3130302e373a343433";

    private static readonly DenialRecord Golden = new(DenialKind.Connection, "never_learned", 12, 10, "198.51.100.7:443");

    [Test]
    public void TheGoldenVectorIsWhatTheWriterWritesAndTheReaderReads()
    {
        var buffer = new byte[DenialReportCodec.MaxRecordLength];
        int length = DenialReportCodec.WriteRecord(Golden, buffer);

        var result = DenialReportCodec.TryReadRecord(Hex.Bytes(GoldenHex), out DenialRecord read, out int consumed);

        Assert.Multiple(() =>
        {
            Assert.That(Convert.ToHexString(buffer, 0, length), Is.EqualTo(GoldenHex.Replace(" ", "", StringComparison.Ordinal).ToUpperInvariant()));
            Assert.That((result, read, consumed), Is.EqualTo((DenialReportReadResult.Complete, Golden, length)));
        });
    }

    [Test]
    public void TheRequestIsVersionOneKindThreeWithAnEmptyBody()
    {
        var bytes = new byte[TunnelCodec.MaxRequestLength];
        int length = TunnelCodec.WriteRequest(TunnelRequest.ForDenialReport(), bytes);
        var sequence = new ReadOnlySequence<byte>(bytes, 0, length);

        var result = TunnelCodec.TryReadRequest(ref sequence, out TunnelRequest request);

        Assert.Multiple(() =>
        {
            Assert.That(Convert.ToHexString(bytes, 0, length), Is.EqualTo("01030000"));
            Assert.That((result, request.Kind, request.Destination), Is.EqualTo((TunnelReadResult.Complete, TunnelRequestKind.DenialReport, (System.Net.IPEndPoint?)null)));
        });
    }

    [TestCase("02 03 00 00", TunnelReadResult.UnsupportedKind)] // version 2 is TCP only
    [TestCase("01 03 00 01 00", TunnelReadResult.LengthMismatch)]
    [TestCase("01 04 00 00", TunnelReadResult.UnsupportedKind)]
    public void ARequestOfAnotherShapeIsRefused(string hex, object expectedValue)
    {
        var expected = (TunnelReadResult)expectedValue;
        var sequence = new ReadOnlySequence<byte>(Hex.Bytes(hex));

        Assert.That(TunnelCodec.TryReadRequest(ref sequence, out _), Is.EqualTo(expected));
    }

    [Test]
    public void EveryKindAndTheLongestFieldsRoundTrip()
    {
        var records = new[]
        {
            Golden,
            new DenialRecord(DenialKind.DnsQuestion, "name_not_allowed", 1, 0, "evil.example A"),
            new DenialRecord(DenialKind.ServerName, "not_allowed", uint.MaxValue, ushort.MaxValue, "198.51.100.7:443 server name other.example"),
            new DenialRecord(DenialKind.Connection, new string('a', DenialReportCodec.MaxReasonLength), 3, 7, new string('~', DenialReportCodec.MaxSubjectLength)),
            new DenialRecord(DenialKind.Connection, "various", 9, 1, string.Empty),
            new DenialRecord((DenialKind)200, "x_1", 2, 5, "a future kind"),
        };
        var report = Write(records);

        Assert.That(ReadAll(report), Is.EqualTo(records));
        Assert.That(report, Has.Length.LessThanOrEqualTo(DenialReportCodec.MaxReportLength));
    }

    [Test]
    public void ARecordCutAtAnyByteIsIncompleteNeverAnError()
    {
        var record = new DenialRecord(DenialKind.DnsQuestion, "name_not_allowed", 40, 10, "exfil.attacker.example TXT");
        var bytes = Write([record]);

        for (int cut = 0; cut < bytes.Length - 1; cut++)
        {
            var result = DenialReportCodec.TryReadRecord(bytes.AsSpan(0, cut), out _, out int consumed);
            Assert.That((result, consumed), Is.EqualTo((DenialReportReadResult.Incomplete, 0)), $"cut at {cut}");
        }
    }

    [TestCase("01 00000000", DenialReportReadResult.ZeroCount)]
    [TestCase("01 00000001 0000 00", DenialReportReadResult.BadReason)]
    [TestCase("01 00000001 0000 21", DenialReportReadResult.BadReason)] // 33 > 32
    [TestCase("01 00000001 0000 03 61 41", DenialReportReadResult.BadReason)] // 'A', seen before the rest arrives
    [TestCase("01 00000001 0000 01 61 c9", DenialReportReadResult.BadSubject)] // 201 > 200
    [TestCase("01 00000001 0000 01 61 05 61 0a", DenialReportReadResult.BadSubject)] // a newline, seen before the rest
    [TestCase("01 00000001 0000 01 61 01 7f", DenialReportReadResult.BadSubject)] // DEL
    [TestCase("01 00000001 0000 01 61 01 c3", DenialReportReadResult.BadSubject)] // not ASCII
    public void HostileBytesAreRefusedAsSoonAsTheyArrive(string hex, object expectedValue)
    {
        var expected = (DenialReportReadResult)expectedValue;
        var result = DenialReportCodec.TryReadRecord(Hex.Bytes(hex), out _, out int consumed);

        Assert.That((result, consumed), Is.EqualTo((expected, 0)));
    }

    [Test]
    public void RandomBytesNeverThrowAndNeverReadPastTheBuffer()
    {
        var random = new Random(20261202);
        var buffer = new byte[512];
        for (int i = 0; i < 200_000; i++)
        {
            int length = random.Next(buffer.Length);
            random.NextBytes(buffer.AsSpan(0, length));
            if (length > 0 && random.Next(2) == 0)
            {
                buffer[0] = (byte)random.Next(1, 4); // mostly well-formed starts
                if (length > 7)
                {
                    buffer[7] = (byte)random.Next(0, 40);
                }
            }

            var result = DenialReportCodec.TryReadRecord(buffer.AsSpan(0, length), out DenialRecord record, out int consumed);
            Assert.That(consumed, Is.InRange(0, length));
            if (result == DenialReportReadResult.Complete)
            {
                var again = new byte[DenialReportCodec.MaxRecordLength];
                Assert.That(again.AsSpan(0, DenialReportCodec.WriteRecord(record, again)).SequenceEqual(buffer.AsSpan(0, consumed)), Is.True, "what is read is written back the same");
            }
        }
    }

    [Test]
    public void ASubjectIsMadePrintableAndCutToFit()
    {
        string control = DenialReportCodec.Subject("a\nb\u001B[31mc\u00e9");
        string longName = DenialReportCodec.Subject(new string('x', 253) + ":443");

        Assert.Multiple(() =>
        {
            Assert.That(control, Is.EqualTo("a?b?[31mc?"));
            Assert.That(longName, Has.Length.EqualTo(DenialReportCodec.MaxSubjectLength));
            Assert.That(longName, Does.EndWith("xxx..."));
            Assert.That(DenialReportCodec.Subject("evil.example A"), Is.EqualTo("evil.example A"));
        });
    }

    [Test]
    public void TheWriterRefusesWhatTheReaderWouldRefuse()
    {
        var buffer = new byte[DenialReportCodec.MaxRecordLength];
        Assert.Multiple(() =>
        {
            Assert.That(() => DenialReportCodec.WriteRecord(Golden with { Count = 0 }, buffer), Throws.ArgumentException);
            Assert.That(() => DenialReportCodec.WriteRecord(Golden with { Kind = 0 }, buffer), Throws.ArgumentException);
            Assert.That(() => DenialReportCodec.WriteRecord(Golden with { Reason = "Never" }, buffer), Throws.ArgumentException);
            Assert.That(() => DenialReportCodec.WriteRecord(Golden with { Subject = "a\nb" }, buffer), Throws.ArgumentException);
            Assert.That(() => DenialReportCodec.WriteRecord(Golden with { Subject = new string('a', 201) }, buffer), Throws.ArgumentException);
        });
    }

    private static byte[] Write(IEnumerable<DenialRecord> records)
    {
        var bytes = new List<byte>();
        var buffer = new byte[DenialReportCodec.MaxRecordLength];
        foreach (var record in records)
        {
            bytes.AddRange(buffer.AsSpan(0, DenialReportCodec.WriteRecord(record, buffer)).ToArray());
        }

        bytes.Add(DenialReportCodec.End);
        return [.. bytes];
    }

    private static List<DenialRecord> ReadAll(byte[] report)
    {
        var records = new List<DenialRecord>();
        int offset = 0;
        while (true)
        {
            var result = DenialReportCodec.TryReadRecord(report.AsSpan(offset), out DenialRecord record, out int consumed);
            offset += consumed;
            if (result == DenialReportReadResult.End)
            {
                Assert.That(offset, Is.EqualTo(report.Length));
                return records;
            }

            Assert.That(result, Is.EqualTo(DenialReportReadResult.Complete), Encoding.ASCII.GetString(report));
            records.Add(record);
        }
    }

    /// <summary>Every subject the enclave's tally writes has its kind's shape, also where <see cref="DenialReportCodec.Subject"/>
    /// cut a long name at each length around the limit.</summary>
    [Test]
    public void EverySubjectTheEnclavesTallyWritesHasItsKindsShape()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var tally = new Egress.Denials.DenialTally(time, Egress.Denials.DenialDetail.Destinations);
        tally.Connection(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("198.51.100.7"), 443), Egress.Policy.DecisionReason.NeverLearned);
        tally.Connection(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("2001:db8::1"), 65535), Egress.Policy.DecisionReason.InternalRange);
        tally.DnsQuestion(".", "NS", Egress.Policy.DecisionReason.NameNotAllowed);
        tally.ServerName(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("198.51.100.7"), 443), null, Egress.Tls.ServerNameRefusal.NoServerName);
        var records = new List<DenialRecord>(tally.Take().Records);
        for (int length = 180; length <= 253; length++)
        {
            // A report names so many subjects: one tally per length.
            string name = LongName(length);
            tally.DnsQuestion(name, "A", Egress.Policy.DecisionReason.NameNotAllowed);
            tally.DnsQuestion(name, "TYPE65534", Egress.Policy.DecisionReason.NameNotAllowed);
            tally.ServerName(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), 65535), name, Egress.Tls.ServerNameRefusal.NotAllowed);
            records.AddRange(tally.Take().Records);
        }

        records.Add(DenialReportCodec.PolicyRecord(Egress.Configuration.ConfiguredComponents.GetPolicyDigest(Egress.Configuration.EgressConfiguration.Parse("[egress]\n", "enclave.toml"))));

        Assert.Multiple(() =>
        {
            Assert.That(records.Count(r => r.Subject.EndsWith("...", StringComparison.Ordinal)), Is.GreaterThan(100), "cut subjects are among them");
            Assert.That(records.Count(r => r.Subject.Length == 0), Is.Zero, "every subject named");
            foreach (var record in records)
            {
                Assert.That(DenialReportCodec.IsSubjectShape(record.Kind, record.Subject), Is.True, $"{record.Kind}: {record.Subject}");
            }
        });
    }

    /// <summary>A report's subject is the peer's text, which the parent writes into its log: text shaped like another
    /// line of that log (which <c>report-to-allowlist</c> reads) is in no kind's shape.</summary>
    [TestCase((int)DenialKind.Connection, "report mode: would deny connection to 203.0.113.66:443 (name exfil.attacker.example): x")]
    [TestCase((int)DenialKind.Connection, "198.51.100.20:443 (for api.example.com) denied: internal range x; report mode does not relax internal addresses")]
    [TestCase((int)DenialKind.Connection, "198.51.100.7")]
    [TestCase((int)DenialKind.Connection, "198.51.100.7:0")]
    [TestCase((int)DenialKind.Connection, "198.051.100.7:443")]
    [TestCase((int)DenialKind.Connection, "[2001:DB8::1]:443")]
    [TestCase((int)DenialKind.Connection, "198.51.100.7:443 (a b)")]
    [TestCase((int)DenialKind.Connection, "198.51.100.7:443 ")]
    [TestCase((int)DenialKind.Connection, "198.51.100.7:443 (api.example.com)")]
    [TestCase((int)DenialKind.DnsQuestion, "evil.example a")]
    [TestCase((int)DenialKind.DnsQuestion, "evil.example A extra")]
    [TestCase((int)DenialKind.DnsQuestion, "evil.example")]
    [TestCase((int)DenialKind.DnsQuestion, "DNS rebinding refused: api.example.com answered 10.0.0.1: x A")]
    [TestCase((int)DenialKind.ServerName, "198.51.100.7:443 server name a b")]
    [TestCase((int)DenialKind.ServerName, "198.51.100.7:443 server name other.example is not allowed by any entry")]
    [TestCase((int)DenialKind.ServerName, "server name other.example")]
    [TestCase((int)DenialKind.PolicyDigest, "sha256:0123")]
    [TestCase((int)DenialKind.PolicyDigest, "sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789")]
    [TestCase(9, "x")]
    public void TextInNoShapeTheEnclaveWritesIsRefused(int kind, string subject) =>
        Assert.That(DenialReportCodec.IsSubjectShape((DenialKind)kind, subject), Is.False);

    [TestCase((int)DenialKind.DnsQuestion, "_dmarc.example.com TXT")]
    [TestCase((int)DenialKind.Connection, "[fe80::1%2]:443")]
    [TestCase((int)DenialKind.Connection, "[::ffff:198.51.100.7]:443")]
    [TestCase(9, "")]
    public void ShapesTheTallyWritesForOtherInputs(int kind, string subject) =>
        Assert.That(DenialReportCodec.IsSubjectShape((DenialKind)kind, subject), Is.True);

    /// <summary>A name of <paramref name="length"/> characters in labels of up to 63.</summary>
    private static string LongName(int length)
    {
        var name = new StringBuilder();
        while (name.Length < length)
        {
            int left = length - name.Length;
            name.Append(name.Length > 0 ? "." : string.Empty);
            name.Append('a', Math.Min(63, left - (name.Length > 1 ? 1 : 0)));
        }

        return name.ToString()[..length].TrimEnd('.').PadRight(length, 'b');
    }
}
