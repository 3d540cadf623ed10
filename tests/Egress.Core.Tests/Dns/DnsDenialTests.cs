using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Tests.Dns.Vectors;

namespace Egress.Tests.Dns;

/// <summary>
/// The denial (NXDOMAIN with an RFC 8914 Extended DNS Error when the query has EDNS), the OPT record every
/// synthesized answer carries for an EDNS query, NOTIMP for opcodes other than QUERY, and what a malformed OPT
/// record or an unknown EDNS version gets. Golden bytes throughout.
/// </summary>
public sealed class DnsDenialTests
{
    private delegate int Writer(ReadOnlySpan<byte> query, Span<byte> destination);

    private const string EvilQuestion = "046576696c076578616d706c650000010001";

    // EDE option: OPTION-CODE 15, OPTION-LENGTH 38, INFO-CODE 15 (Blocked), EXTRA-TEXT "egress policy: name not in allowlist".
    private const string BlockedEde = "000f0026000f" + "65677265737320706f6c6963793a206e616d65206e6f7420696e20616c6c6f776c697374";

    [Test]
    public void DenialWithoutEdnsIsAPlainNxDomainWithTheQuestion()
    {
        byte[] query = DnsMessageBuilder.Query().Question("evil.example").ToArray();

        Assert.That(Write(DnsMessage.WriteDenied, query), Is.EqualTo("beef81830001000000000000" + EvilQuestion));
    }

    [Test]
    public void DenialOfAnEdnsQueryCarriesAnOptRecordWithTheBlockedExtendedError()
    {
        // DO set in the query (TTL 0x00008000): copied (RFC 3225 §3). Payload size advertised: 1232 (0x04d0).
        byte[] query = DnsMessageBuilder.Query(ar: 1).Question("evil.example").Opt(4096, 0x8000).ToArray();

        Assert.That(
            Write(DnsMessage.WriteDenied, query),
            Is.EqualTo("beef81830001000000000001" + EvilQuestion + "00" + "0029" + "04d0" + "00008000" + "002a" + BlockedEde));
    }

    [Test]
    public void DenialClearsDoWhenTheQueryDidNotSetItAndIgnoresTheQueryOptions()
    {
        // A cookie option (code 10, 8 bytes) in the query is not echoed; only the EDE option is sent.
        byte[] query = DnsMessageBuilder.Query(ar: 1).Question("evil.example").Opt(512, 0, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8).ToArray();

        Assert.That(
            Write(DnsMessage.WriteDenied, query),
            Is.EqualTo("beef81830001000000000001" + EvilQuestion + "00002904d000000000002a" + BlockedEde));
    }

    /// <summary>A trial (5 December 2026): with egress disabled, dig showed "name not in allowlist" while the log said
    /// "egress disabled". The EXTRA-TEXT now says why the name was denied.</summary>
    [Test]
    public void ADenialBecauseEgressIsDisabledSaysSoInItsExtendedError()
    {
        byte[] query = DnsMessageBuilder.Query(ar: 1).Question("evil.example").Opt(4096, 0).ToArray();
        Assert.That(DnsMessage.TryParseQuestion(query, out DnsQuestion question, out _), Is.EqualTo(DnsParseError.None));
        byte[] response = new byte[DnsMessage.MaxErrorResponseLength];
        var disabled = Egress.Policy.EgressPolicy.Create(false, ["evil.example"], new Egress.Policy.AllowlistCache(new Egress.Policy.AllowlistCacheOptions())).CheckName("evil.example");
        var notListed = Egress.Policy.EgressPolicy.Create(true, ["good.example"], new Egress.Policy.AllowlistCache(new Egress.Policy.AllowlistCacheOptions())).CheckName("evil.example");

        DnsQueryResult result = DnsQueryResult.Denied(query, response, question, disabled);
        string disabledHex = Convert.ToHexStringLower(response, 0, result.Length);
        result = DnsQueryResult.Denied(query, response, question, notListed);
        string notListedHex = Convert.ToHexStringLower(response, 0, result.Length);

        // EDE option: OPTION-CODE 15, OPTION-LENGTH 32, INFO-CODE 15 (Blocked), EXTRA-TEXT "egress policy: egress disabled".
        Assert.That(disabledHex, Is.EqualTo("beef81830001000000000001" + EvilQuestion + "00" + "0029" + "04d0" + "00000000" + "0024"
            + "000f0020000f" + Convert.ToHexStringLower("egress policy: egress disabled"u8)));
        Assert.That(notListedHex, Does.EndWith(BlockedEde));
        Assert.That(result.Decision.IsAllowed, Is.False);
    }

    [Test]
    public void DeniedAnswerReadsBackAsNxDomainWithoutAddresses()
    {
        byte[] query = DnsMessageBuilder.Query(ar: 1).Question("evil.example").Opt(1232, 0).ToArray();
        byte[] answer = Convert.FromHexString(Write(DnsMessage.WriteDenied, query));

        Assert.That(DnsHeader.TryRead(answer, out DnsHeader header), Is.True);
        Assert.That((header.ResponseCode, header.QdCount, header.AnCount, header.NsCount, header.ArCount), Is.EqualTo(((byte)3, (ushort)1, (ushort)0, (ushort)0, (ushort)1)));
        var records = new List<DnsAddressRecord>();
        Assert.That(DnsMessage.ExtractAddresses(answer, records), Is.EqualTo(DnsParseError.None));
        Assert.That(records, Is.Empty);
    }

    [Test]
    public void ServFailToAnEdnsQueryCarriesAnOptRecordWithoutOptions()
    {
        Assert.That(
            Write(DnsMessage.WriteServFail, DnsVectors.ManyTestAEdnsQuery),
            Is.EqualTo("100581820001000000000001046d616e7904746573740000010001" + "00002904d0000000000000"));
    }

    [Test]
    public void TruncatedStandInForAnEdnsQueryCarriesAnOptRecord()
    {
        byte[] query = DnsMessageBuilder.Query(ar: 1).Question("big.x.test").Opt(512, 0x8000).ToArray();
        byte[] response = new DnsMessageBuilder().Header(0xBEEF, 0x8580, 1, 1, 0, 0).Question("big.x.test").A("big.x.test", "198.18.1.1").ToArray();
        byte[] destination = new byte[DnsMessage.MaxErrorResponseLength];
        DnsMessage.TryParseQuestion(query, out _, out int questionEnd);

        int length = DnsForwarding.WriteTruncated(query, questionEnd, response, response.Length + 10, destination);

        Assert.That(
            Convert.ToHexStringLower(destination, 0, length),
            Is.EqualTo("beef87800001000000000001" + "03626967017804746573740000010001" + "00002904d0000080000000"));
    }

    [TestCase((ushort)0x1000, "00079084" + "0000000000000000")] // opcode 2 STATUS, no question
    [TestCase((ushort)0x2400, "0007a084" + "0000000000000000")] // opcode 4 NOTIFY with AA: AA cleared
    public void NonQueryOpcodesGetNotImp(ushort flags, string expected)
    {
        byte[] query = new DnsMessageBuilder().Header(7, flags, 0, 0, 0, 0).ToArray();

        Assert.That(DnsMessage.HasUnimplementedOpcode(query), Is.True);
        Assert.That(Screen(query, out string outcome), Is.EqualTo(expected));
        Assert.That(outcome, Is.EqualTo("notimp"));
    }

    [Test]
    public void NotifyWithAQuestionAndEdnsGetsNotImpWithBoth()
    {
        byte[] query = new DnsMessageBuilder().Header(9, 0x2400, 1, 0, 0, 1).Question("zone.test", 6).Opt(1232, 0).ToArray();

        Assert.That(Screen(query, out _), Is.EqualTo("0009a0840001000000000001" + "047a6f6e6504746573740000060001" + "00002904d0000000000000"));
    }

    [Test]
    public void AResponseIsNeverAnsweredWhateverItsOpcode()
    {
        byte[] response = new DnsMessageBuilder().Header(7, 0x9000, 0, 0, 0, 0).ToArray();

        Assert.That(DnsMessage.HasUnimplementedOpcode(response), Is.False);
        Assert.That(DnsMessage.WriteNotImp(response, new byte[DnsMessage.MaxErrorResponseLength]), Is.EqualTo(-1));
    }

    [Test]
    public void AWellFormedQueryIsForwarded()
    {
        byte[] query = DnsMessageBuilder.Query(ar: 1).Question("a.test").Opt(1232, 0x8000, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8).ToArray();

        Assert.That(DnsScreening.Screen(query, new byte[DnsMessage.MaxErrorResponseLength], out DnsQuestion question, out _), Is.Null);
        Assert.That(question.Name, Is.EqualTo("a.test"));
    }

    // RFC 6891 §6.1.1: more than one OPT is FORMERR (a MUST). The other malformed OPT records get the same: the
    // message is not well-formed, and FORMERR without an OPT record tells the client to retry without EDNS
    // (RFC 6891 §7), which then gets a proper answer.
    [TestCase("two OPT records", 2)]
    [TestCase("OPT owned by a non-root name", 1)]
    [TestCase("option longer than the RDATA", 1)]
    [TestCase("option header cut short", 1)]
    [TestCase("RDATA past the end of the message", 1)]
    [TestCase("OPT in the answer section", 1)]
    public void AMalformedOptRecordGetsFormErrWithoutOpt(string what, int arCount)
    {
        DnsMessageBuilder builder = what == "OPT in the answer section"
            ? new DnsMessageBuilder().Header(0xBEEF, 0x0100, 1, 1, 0, 0).Question("a.test")
            : DnsMessageBuilder.Query(ar: (ushort)arCount).Question("a.test");
        byte[] query = what switch
        {
            "two OPT records" => builder.Opt(1232, 0).Opt(1232, 0).ToArray(),
            "OPT owned by a non-root name" => builder.Labels("x").Root().Fixed(41, 0, 0, 1232).ToArray(),
            "option longer than the RDATA" => builder.Opt(1232, 0, 0, 10, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8).ToArray(),
            "option header cut short" => builder.Opt(1232, 0, 0, 10, 0).ToArray(),
            "RDATA past the end of the message" => builder.Root().Fixed(41, 0, 4, 1232).Bytes(0, 10).ToArray(),
            _ => builder.Opt(1232, 0).ToArray(),
        };

        Assert.That(DnsMessage.ReadEdns(query, 12 + 8 + 4).State, Is.EqualTo(DnsEdnsState.Malformed));
        Assert.That(Screen(query, out string outcome), Is.EqualTo("beef81810001000000000000" + "016104746573740000010001"));
        Assert.That(outcome, Is.EqualTo("formerr"));
        Assert.That(Write(DnsMessage.WriteDenied, query), Is.EqualTo("beef81830001000000000000" + "016104746573740000010001"), "no OPT from a malformed one");
    }

    [Test]
    public void AnUnknownEdnsVersionGetsBadVers()
    {
        // VERSION 1 (TTL 0x00010000): BADVERS is RCODE 16, header RCODE 0 and EXTENDED-RCODE 1; our VERSION is 0.
        byte[] query = DnsMessageBuilder.Query(ar: 1).Question("a.test").Opt(1232, 0x00018000).ToArray();

        Assert.That(Screen(query, out string outcome), Is.EqualTo("beef81800001000000000001" + "016104746573740000010001" + "00002904d0" + "01008000" + "0000"));
        Assert.That(outcome, Is.EqualTo("badvers"));
    }

    [Test]
    public void TheDenialsOptRecordIsTheDocumentedMaximum()
    {
        Assert.That(DnsEdns.DeniedExtraText.Length, Is.EqualTo(36));
        Assert.That(11 + 4 + 2 + DnsEdns.DeniedExtraText.Length, Is.EqualTo(DnsEdns.MaxOptLength));
    }

    private static string Screen(byte[] query, out string outcome)
    {
        byte[] destination = new byte[DnsMessage.MaxErrorResponseLength];
        DnsQueryResult result = DnsScreening.Screen(query, destination, out _, out _)!.Value;
        outcome = result.MetricTag;
        int length = result.Length;
        Assert.That(length, Is.GreaterThan(0));
        return Convert.ToHexStringLower(destination, 0, length);
    }

    private static string Write(Writer writer, byte[] query)
    {
        byte[] destination = new byte[DnsMessage.MaxErrorResponseLength];
        int length = writer(query, destination);
        Assert.That(length, Is.GreaterThan(0));
        return Convert.ToHexStringLower(destination, 0, length);
    }

    private static string Write(Writer writer, string queryHex) => Write(writer, Convert.FromHexString(queryHex));
}
