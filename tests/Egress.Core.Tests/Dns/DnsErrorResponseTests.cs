using System.Net;
using System.Net.Sockets;
using DnsClient;
using DnsClient.Protocol;
using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Tests.Dns.Vectors;

namespace Egress.Tests.Dns;

public sealed class DnsErrorResponseTests
{
    private delegate int Writer(ReadOnlySpan<byte> query, Span<byte> destination);

    private static readonly Writer[] Writers =
        [DnsMessage.WriteRefused, DnsMessage.WriteServFail, DnsMessage.WriteFormErr, DnsMessage.WriteDenied, DnsMessage.WriteNotImp, DnsMessage.WriteBadVers];

    [Test]
    public void RefusedIsByteForByteWhatDnsmasqAnswers()
    {
        // dnsmasq without upstream servers refuses example.invalid: flags 0x8185 (QR, RD, RA, REFUSED).
        Assert.That(Write(DnsMessage.WriteRefused, DnsVectors.UnknownAQuery), Is.EqualTo(DnsVectors.UnknownAResponse));
    }

    [Test]
    public void ServFailCopiesIdRdAndQuestion()
    {
        Assert.That(Write(DnsMessage.WriteServFail, DnsVectors.ATestAQuery), Is.EqualTo("100181820001000000000000016104746573740000010001"));
    }

    [Test]
    public void FormErrCopiesIdRdAndQuestion()
    {
        Assert.That(Write(DnsMessage.WriteFormErr, DnsVectors.MixedCaseAaaaQuery), Is.EqualTo("100381810001000000000000035777570142045465537400001c0001"));
    }

    [Test]
    public void AnEdnsQueryGetsAnOptRecordWithoutOptions()
    {
        // many.test A with an OPT record (payload 4096, DO clear): ARCOUNT 1, OPT owner root, TYPE 41, CLASS 1232,
        // TTL 0 (EXTENDED-RCODE 0, VERSION 0, DO 0), RDLENGTH 0.
        Assert.That(Write(DnsMessage.WriteRefused, DnsVectors.ManyTestAEdnsQuery), Is.EqualTo("100581850001000000000001046d616e7904746573740000010001" + "00002904d0000000000000"));
        Assert.That(Write(DnsMessage.WriteServFail, DnsVectors.ManyTestAEdnsQuery), Is.EqualTo("100581820001000000000001046d616e7904746573740000010001" + "00002904d0000000000000"));
        Assert.That(Write(DnsMessage.WriteFormErr, DnsVectors.ManyTestAEdnsQuery), Is.EqualTo("100581810001000000000001046d616e7904746573740000010001" + "00002904d0000000000000"));
    }

    [Test]
    public void OpcodeRdAndCdAreCopiedWhileAaTcAndAdAreCleared()
    {
        // Query flags: opcode 4, AA, TC, RD, AD, CD, RCODE 3 (nonsense in a query, must not leak).
        byte[] query = new DnsMessageBuilder().Header(7, 0x2733, 1, 0, 0, 0).Question("a.test").ToArray();

        Assert.That(Write(DnsMessage.WriteRefused, query), Is.EqualTo("0007a1950001000000000000016104746573740000010001"));
    }

    [Test]
    public void RdClearStaysClear()
    {
        byte[] query = new DnsMessageBuilder().Header(7, 0x0000, 1, 0, 0, 0).Question("a.test").ToArray();

        Assert.That(Write(DnsMessage.WriteServFail, query), Is.EqualTo("000780820001000000000000016104746573740000010001"));
    }

    [Test]
    public void QuestionPointingIntoTheHeaderIsNotAnswered()
    {
        // "www" + a pointer to offset 5 of the header: no name lives there, so there is no question to echo.
        byte[] query = DnsMessageBuilder.Query().Labels("www").Pointer(5).UInt16(1).UInt16(1).ToArray();

        Assert.That(DnsMessage.WriteRefused(query, new byte[512]), Is.EqualTo(-1));
    }

    [Test]
    public void NameWithoutATextFormIsStillRefused()
    {
        byte[] query = DnsMessageBuilder.Query().Bytes(10).Bytes("api.stripe"u8.ToArray()).Name("com").UInt16(1).UInt16(1).ToArray();

        Assert.That(DnsMessage.TryParseQuestion(query, out _, out _), Is.EqualTo(DnsParseError.BadCharacter));
        Assert.That(Write(DnsMessage.WriteRefused, query), Is.EqualTo("beef81850001000000000000" + "0a6170692e737472697065" + "03636f6d00" + "00010001"));
    }

    [Test]
    public void LongestQuestionFitsTheDocumentedMaximum()
    {
        string name = string.Join('.', new string('a', 63), new string('b', 63), new string('c', 63), new string('d', 61));
        byte[] query = DnsMessageBuilder.Query().Question(name).ToArray();
        byte[] destination = new byte[DnsMessage.MaxErrorResponseLength];

        Assert.That(DnsMessage.MaxErrorResponseLength, Is.EqualTo(271 + 53));
        Assert.That(DnsMessage.WriteRefused(query, destination), Is.EqualTo(271));
        Assert.That(destination.AsSpan(12, 259).SequenceEqual(query.AsSpan(12)), Is.True);
    }

    [Test]
    public void LongestQuestionWithEdnsDenialFitsTheDocumentedMaximum()
    {
        string name = string.Join('.', new string('a', 63), new string('b', 63), new string('c', 63), new string('d', 61));
        byte[] query = DnsMessageBuilder.Query(ar: 1).Question(name).Opt(1232, 0).ToArray();
        byte[] destination = new byte[DnsMessage.MaxErrorResponseLength];

        Assert.That(DnsMessage.WriteDenied(query, destination), Is.EqualTo(DnsMessage.MaxErrorResponseLength));
    }

    [Test]
    public void DestinationShorterThanTheMaximumIsRejected()
    {
        byte[] query = Convert.FromHexString(DnsVectors.ATestAQuery);

        foreach (Writer writer in Writers)
        {
            Assert.That(() => writer(query, new byte[DnsMessage.MaxErrorResponseLength - 1]), Throws.ArgumentException);
        }
    }

    [TestCase(DnsVectors.ATestAResponse)]
    [TestCase(DnsVectors.UnknownAResponse)]
    public void ResponsesAreNeverAnswered(string responseHex)
    {
        foreach (Writer writer in Writers)
        {
            Assert.That(writer(Convert.FromHexString(responseHex), new byte[512]), Is.EqualTo(-1));
        }
    }

    [Test]
    public void MessageShorterThanAHeaderIsNeverAnswered()
    {
        byte[] query = Convert.FromHexString(DnsVectors.ATestAQuery)[..11];

        foreach (Writer writer in Writers)
        {
            Assert.That(writer(query, new byte[512]), Is.EqualTo(-1));
        }
    }

    [TestCase((ushort)0)]
    [TestCase((ushort)2)]
    public void WithoutASingleQuestionOnlyFormErrAnswersWithAnEmptyQuestionSection(ushort qdCount)
    {
        byte[] query = DnsMessageBuilder.Query(qd: qdCount).Question("a.test").Question("b.test").ToArray();

        Assert.That(DnsMessage.WriteRefused(query, new byte[512]), Is.EqualTo(-1));
        Assert.That(DnsMessage.WriteServFail(query, new byte[512]), Is.EqualTo(-1));
        Assert.That(Write(DnsMessage.WriteFormErr, query), Is.EqualTo("beef81810000000000000000"));
    }

    [Test]
    public void UnreadableQuestionOnlyGetsAFormErr()
    {
        byte[] query = DnsMessageBuilder.Query().Question("a.test").ToArray()[..^1];

        Assert.That(DnsMessage.WriteRefused(query, new byte[512]), Is.EqualTo(-1));
        Assert.That(DnsMessage.WriteServFail(query, new byte[512]), Is.EqualTo(-1));
        Assert.That(Write(DnsMessage.WriteFormErr, query), Is.EqualTo("beef81810000000000000000"));
    }

    [Test]
    public void BuiltAnswerReadsBackAsAResponseWithTheSameQuestion()
    {
        byte[] query = Convert.FromHexString(DnsVectors.MixedCaseAaaaQuery);
        byte[] answer = Convert.FromHexString(Write(DnsMessage.WriteServFail, query));

        Assert.That(DnsHeader.TryRead(answer, out DnsHeader header), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(header.Id, Is.EqualTo(DnsMessage.ReadId(query)));
            Assert.That(header.IsResponse, Is.True);
            Assert.That(header.ResponseCode, Is.EqualTo(2));
            Assert.That(header.RecursionAvailable, Is.True);
            Assert.That((header.QdCount, header.AnCount, header.NsCount, header.ArCount), Is.EqualTo((1, 0, 0, 0)));
        });
        var records = new List<DnsAddressRecord>();
        Assert.That(DnsMessage.ExtractAddresses(answer, records), Is.EqualTo(DnsParseError.None));
        Assert.That(records, Is.Empty);
    }

    [TestCase(5, DnsHeaderResponseCode.Refused)]
    [TestCase(2, DnsHeaderResponseCode.ServerFailure)]
    [TestCase(3, DnsHeaderResponseCode.NotExistentDomain)]
    public async Task DnsClientReadsTheAnswer(int rcode, DnsHeaderResponseCode expected)
    {
        using var cancellation = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        using var server = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        var endpoint = (IPEndPoint)server.Client.LocalEndPoint!;
        Task responder = RespondOnceAsync(server, rcode switch { 5 => DnsMessage.WriteRefused, 3 => DnsMessage.WriteDenied, _ => DnsMessage.WriteServFail }, cancellation.Token);
        var client = new LookupClient(new LookupClientOptions(new NameServer(endpoint))
        {
            UseCache = false,
            Retries = 0,
            Timeout = TimeSpan.FromSeconds(5),
            ThrowDnsErrors = false,
            UseTcpFallback = false,
        });

        IDnsQueryResponse response = await client.QueryAsync("Api.Example.test", QueryType.AAAA, cancellationToken: cancellation.Token);
        await responder;

        Assert.Multiple(() =>
        {
            Assert.That(response.HasError, Is.True);
            Assert.That(response.Header.ResponseCode, Is.EqualTo(expected));
            Assert.That(response.Header.RecursionAvailable, Is.True);
            Assert.That(response.Header.RecursionDesired, Is.True);
            Assert.That(response.Answers, Is.Empty);
            Assert.That(response.Additionals.Select(r => r.RecordType), Is.EqualTo(new[] { ResourceRecordType.OPT }), "DnsClient asks with EDNS");
            Assert.That(response.Questions.Select(q => (q.QueryName.Value, q.QuestionType)), Is.EqualTo(new[] { ("Api.Example.test.", QueryType.AAAA) }));
        });
    }

    private static async Task RespondOnceAsync(UdpClient server, Writer writer, CancellationToken cancellationToken)
    {
        UdpReceiveResult received = await server.ReceiveAsync(cancellationToken);
        byte[] answer = new byte[DnsMessage.MaxErrorResponseLength];
        int length = writer(received.Buffer, answer);
        await server.SendAsync(answer.AsMemory(0, length), received.RemoteEndPoint, cancellationToken);
    }

    private static string Write(Writer writer, string queryHex) => Write(writer, Convert.FromHexString(queryHex));

    private static string Write(Writer writer, byte[] query)
    {
        byte[] destination = new byte[512];
        int length = writer(query, destination);
        Assert.That(length, Is.GreaterThan(0));
        return Convert.ToHexStringLower(destination, 0, length);
    }
}
