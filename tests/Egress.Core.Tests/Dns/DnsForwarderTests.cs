using System.Globalization;
using System.Net;
using DnsClient;
using DnsClient.Protocol;
using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Policy;

namespace Egress.Tests.Dns;

/// <summary>The enclave forwarder end to end: client → DnsForwarder → unix tunnel → TunnelGateway → fake upstream.</summary>
public sealed class DnsForwarderTests
{
    private FakeUpstreamDns _upstream = null!;
    private DnsTunnelHarness _harness = null!;

    [SetUp]
    public async Task SetUp()
    {
        _upstream = new FakeUpstreamDns(TestZone.Answer);
        _harness = await DnsTunnelHarness.StartAsync([_upstream.EndPoint]);
    }

    [TearDown]
    public async Task TearDown()
    {
        await _harness.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    [Test]
    public async Task AllowedNameIsAnsweredWithTheUpstreamsBytes()
    {
        byte[] query = DnsQueryBytes.Build(0x4242, "a.x.test");
        byte[] answer = await _harness.UdpAsync(query);

        Assert.That(_upstream.Answers.TryDequeue(out byte[]? upstreamAnswer), Is.True);
        // The upstream answered the parent's (random) ID; with the client's ID it is exactly what the client got.
        DnsMessage.WriteId(upstreamAnswer, 0x4242);
        Assert.That(answer, Is.EqualTo(upstreamAnswer));
        Assert.That(_upstream.Queries.Single(), Is.EqualTo(new FakeQuery("a.x.test", 1, false)));
    }

    [Test]
    public async Task DnsOverTcpConnectionsBeyondTheLimitAreResetWithAReasonAndUdpStillAnswers()
    {
        // Thousands of slow DNS-over-TCP clients used to hold every descriptor of egress-enclave until it died (stress
        // suite scenario 5): the forwarder serves at most MaxTcpConnections at once and charges them to the budget.
        var held = new List<System.Net.Sockets.Socket>();
        try
        {
            for (int i = 0; i < Egress.Dns.Forwarder.DnsForwarder.MaxTcpConnections; i++)
            {
                var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                held.Add(socket);
                await socket.ConnectAsync(_harness.EndPoint);
            }

            using var beyond = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            System.Net.Sockets.SocketError? ended = null;
            try
            {
                // The reset may come before the connect's completion is seen, or on the first read.
                await beyond.ConnectAsync(_harness.EndPoint);
                await beyond.ReceiveAsync(new byte[16]);
            }
            catch (System.Net.Sockets.SocketException ex)
            {
                ended = ex.SocketErrorCode;
            }

            string line = await _harness.EnclaveLog.WaitForLineAsync("refused connection from");
            byte[] udp = await _harness.UdpAsync(DnsQueryBytes.Build(0x5151, "api.y.test"));

            Assert.Multiple(() =>
            {
                Assert.That(line, Does.Contain($"DNS-over-TCP connection limit reached (fixed limit of DNS-over-TCP connections = {Egress.Dns.Forwarder.DnsForwarder.MaxTcpConnections})"));
                Assert.That(ended, Is.EqualTo(System.Net.Sockets.SocketError.ConnectionReset));
                Assert.That(udp.Length, Is.GreaterThan(12), "UDP is still answered");
            });
        }
        finally
        {
            held.ForEach(socket => socket.Dispose());
        }
    }

    [Test]
    public async Task AllowedNameOverTcpIsAnsweredWithTheUpstreamsBytes()
    {
        byte[] answer = await _harness.TcpAsync(DnsQueryBytes.Build(7, "api.y.test"));

        Assert.That(_upstream.Answers.TryDequeue(out byte[]? upstreamAnswer), Is.True);
        DnsMessage.WriteId(upstreamAnswer, 7);
        Assert.That(answer, Is.EqualTo(upstreamAnswer));
    }

    /// <summary>
    /// A query for an allowed name padded with a 65 KB record, over TCP: before, the upstream got it whole (over TCP, as
    /// too large for UDP), a channel of 64 KB per query to the resolvers. Now it gets the question only, over UDP.
    /// </summary>
    [Test]
    public async Task APaddedQueryReachesTheUpstreamAsItsQuestionOnly()
    {
        byte[] query = DnsQueryBytes.BuildPadded(0x0D0D, "a.x.test", DnsForwarding.MaxUdpMessage + 1);
        byte[] answer = await _harness.TcpAsync(query);

        Assert.That((DnsMessage.ReadId(answer), DnsQueryBytes.Rcode(answer), DnsQueryBytes.AnswerCount(answer)), Is.EqualTo((0x0D0D, 0, 1)));
        Assert.That(_upstream.Queries.Single(), Is.EqualTo(new FakeQuery("a.x.test", 1, false)), "over UDP");
        byte[] received = _upstream.QueryBytes.Single();
        DnsMessage.WriteId(received, 0x0D0D); // the parent's random ID on the wire
        Assert.That(received, Is.EqualTo(DnsQueryBytes.Build(0x0D0D, "a.x.test")));
    }

    [Test]
    public async Task EdnsOptionsAndRecordsOfAQueryStayInTheEnclave()
    {
        byte[] option = [0xFD, 0xE9, 0x00, 0x20, .. "card=4111111111111111;key=AKIAX"u8, 0];
        byte[] query = [
            .. new DnsMessageBuilder().Header(0x0E0E, 0x0100, 1, 1, 0, 1).Question("api.y.test").A("data.x.test", "198.18.0.1")
                .Opt(1232, 0x8000, option).ToArray(),
            .. "and trailing bytes"u8];
        byte[] answer = await _harness.UdpAsync(query);

        Assert.That((DnsMessage.ReadId(answer), DnsQueryBytes.Rcode(answer)), Is.EqualTo((0x0E0E, 0)));
        byte[] received = _upstream.QueryBytes.Single();
        DnsMessage.WriteId(received, 0x0E0E);
        Assert.That(received, Is.EqualTo(new DnsMessageBuilder().Header(0x0E0E, 0x0100, 1, 0, 0, 1).Question("api.y.test").Opt(1232, 0x8000).ToArray()));
    }

    [Test]
    public async Task UdpQueryLargerThanTheListenersLimitGetsFormErrAndIsNotForwardedCutShort()
    {
        // Readable as a query for an allowed name if cut to its first 4,096 bytes.
        byte[] query = DnsQueryBytes.BuildWithTrailingBytes(0x5000, "a.x.test", 5000);
        byte[] answer = await _harness.UdpAsync(query);

        byte[] expected = new byte[DnsMessage.MaxErrorResponseLength];
        int length = DnsMessage.WriteFormErr(query, expected);
        Assert.That(answer, Is.EqualTo(expected[..length]));
        Assert.That(DnsQueryBytes.Rcode(answer), Is.EqualTo(1));
        Assert.That(_upstream.Queries, Is.Empty);
        Assert.That(_harness.EnclaveLog.Values(318, "Action"), Is.EqualTo(new[] { "answered FORMERR" }));

        // A query of exactly the limit is still forwarded.
        byte[] atLimit = await _harness.UdpAsync(DnsQueryBytes.BuildWithTrailingBytes(0x4096, "a.x.test", 4096));
        Assert.That((DnsQueryBytes.Rcode(atLimit), DnsQueryBytes.AnswerCount(atLimit)), Is.EqualTo((0, 1)));
    }

    [Test]
    public async Task DeniedNameGetsNxDomainWithoutForwardingAndIsLoggedOnce()
    {
        byte[] query = DnsQueryBytes.Build(0x1111, "evil.example");
        byte[] answer = await _harness.UdpAsync(query);

        byte[] expected = new byte[DnsMessage.MaxErrorResponseLength];
        int length = DnsMessage.WriteDenied(query, expected);
        Assert.That(answer, Is.EqualTo(expected[..length]));
        Assert.That(DnsQueryBytes.Rcode(answer), Is.EqualTo(3));
        Assert.That(_upstream.Queries, Is.Empty);
        Assert.That(_harness.EnclaveLog.Values(302, "Name"), Is.EqualTo(new[] { "evil.example" }), "one denial logged");
    }

    // A new user's trial (5 December 2026): dig 'a b.egress.test' got FORMERR with nothing logged at Information, and
    // at Debug no name. Now a line at Information (one a second) names the query as it was sent.
    [Test]
    public async Task AQueryRefusedWithFormErrIsLoggedWithItsNameEscaped()
    {
        byte[] query = new DnsMessageBuilder().Header(0x3333, 0x0100, 1, 0, 0, 0).Question("a b.x.test").ToArray();
        byte[] answer = await _harness.UdpAsync(query);
        await _harness.UdpAsync(new DnsMessageBuilder().Header(0x3334, 0x0100, 1, 0, 0, 0).Question("c d.x.test").ToArray());

        Assert.That(DnsQueryBytes.Rcode(answer), Is.EqualTo(1));
        Assert.That(_upstream.Queries, Is.Empty);
        Assert.That(_harness.EnclaveLog.Values(330, "Reason"), Is.EqualTo(new[] { @"BadCharacter in the question a\032b.x.test." }),
            "one line: the second within the second is counted in the next");
    }

    // A new user's trial: "dig . NS" was logged "denied DNS  NS: ..." (the root's name is empty on the wire).
    [Test]
    public async Task TheRootIsLoggedAsADot()
    {
        byte[] answer = await _harness.UdpAsync(DnsQueryBytes.Build(0x2222, string.Empty, type: 2));

        Assert.That(DnsQueryBytes.Rcode(answer), Is.EqualTo(3));
        Assert.That(_upstream.Queries, Is.Empty);
        Assert.That(_harness.EnclaveLog.Values(302, "Name"), Is.EqualTo(new[] { "." }));
        Assert.That(_harness.EnclaveLog.Lines, Has.Some.Contains("denied DNS . NS: "));
    }

    [Test]
    public async Task MixedCaseNamesAreAllowedAndAnsweredAsAsked()
    {
        var result = await _harness.Client().QueryAsync("API.Y.Test", QueryType.A);

        Assert.That(result.HasError, Is.False, result.ErrorMessage);
        Assert.That(result.Answers.ARecords().Select(a => a.Address), Is.EqualTo(new[] { IPAddress.Parse("198.18.0.11") }));
        Assert.That(_upstream.Queries.Single().Name, Is.EqualTo("API.Y.Test"));
        Assert.That(_harness.EnclavePolicy.CheckAddress(IPAddress.Parse("198.18.0.11")).Subject, Is.EqualTo("api.y.test"));
    }

    [TestCase("a.deep.test", 0)]
    [TestCase("b.a.deep.test", 0)]
    [TestCase("deep.test", 3)]
    [TestCase("x.test", 3)]
    [TestCase("y.test", 3)]
    [TestCase("b.api.y.test", 3)]
    public async Task WildcardsMatchAnyDepthBelowTheirDomainButNotTheApex(string name, int rcode)
    {
        byte[] answer = await _harness.UdpAsync(DnsQueryBytes.Build(3, name));

        Assert.That(DnsQueryBytes.Rcode(answer), Is.EqualTo(rcode));
        Assert.That(_upstream.Queries.Select(q => q.Name), rcode == 0 ? Is.EqualTo(new[] { name }) : Is.Empty);
    }

    [Test]
    public async Task AnsweredAddressesAreLearnedOnBothSides()
    {
        var v4 = IPAddress.Parse("198.18.0.10");
        var v6 = IPAddress.Parse("2001:db8::10");
        Assert.That(_harness.EnclavePolicy.CheckAddress(v4).Reason, Is.EqualTo(DecisionReason.NeverLearned));
        Assert.That(_harness.ParentPolicy.CheckAddress(v4).Reason, Is.EqualTo(DecisionReason.NeverLearned));

        var client = _harness.Client();
        await client.QueryAsync("a.x.test", QueryType.A);
        await client.QueryAsync("a.x.test", QueryType.AAAA);

        foreach (var policy in new[] { _harness.EnclavePolicy, _harness.ParentPolicy })
        {
            foreach (var address in new[] { v4, v6 })
            {
                PolicyDecision decision = policy.CheckAddress(address);
                Assert.That((decision.Reason, decision.Subject), Is.EqualTo((DecisionReason.Learned, "a.x.test")), address.ToString());
            }
        }
    }

    [Test]
    public async Task CnameChainToAnOutsideNameLearnsTheFinalAddressUnderTheQuestionName()
    {
        var result = await _harness.Client().QueryAsync("c.x.test", QueryType.A);

        Assert.That(result.Answers.CnameRecords().Single().CanonicalName.Value, Is.EqualTo("outside.z.test."));
        var final = IPAddress.Parse("198.18.0.20");
        foreach (var policy in new[] { _harness.EnclavePolicy, _harness.ParentPolicy })
        {
            PolicyDecision decision = policy.CheckAddress(final);
            Assert.That((decision.Reason, decision.Subject), Is.EqualTo((DecisionReason.Learned, "c.x.test")));
            Assert.That(decision.Time!.Value, Is.LessThanOrEqualTo(TimeSpan.FromSeconds(60)));
        }

        // The outside name itself stays outside the allowlist.
        Assert.That((await _harness.UdpAsync(DnsQueryBytes.Build(9, "outside.z.test")))[3] & 0x0F, Is.EqualTo(3));
    }

    /// <summary>An answer's only address is internal: the enclave's answer has no address left (NOERROR, no
    /// data), and neither side learns it.</summary>
    [Test]
    public async Task RebindingAnswerIsLearnedOnNeitherSideAndTheEnclaveRemovesIt()
    {
        var result = await _harness.Client().QueryAsync("meta.x.test", QueryType.A);

        var metadata = IPAddress.Parse("169.254.169.254");
        Assert.That((result.HasError, result.Answers.ARecords().Count()), Is.EqualTo((false, 0)), () => $"{result.Header} {string.Join(", ", result.Answers)}");
        Assert.That(_harness.EnclavePolicy.CheckAddress(metadata).Reason, Is.EqualTo(DecisionReason.InternalRange));
        Assert.That(_harness.ParentPolicy.CheckAddress(metadata).Reason, Is.EqualTo(DecisionReason.InternalRange));
        Assert.That(_harness.EnclaveLog.Values(308, "Address"), Is.EqualTo(new[] { "169.254.169.254" }));
        Assert.That(_harness.ParentLog.Values(308, "Address"), Is.EqualTo(new[] { "169.254.169.254" }));
        Assert.That(_harness.EnclaveLog.Values(324, "Count"), Is.EqualTo(new[] { "1" }));
    }

    /// <summary>A security review: an answer of more than 64 internal records (here 300 loopback addresses, which the
    /// redirect rules never send to the proxy) was passed on whole, so a rebinding answer reached the app. Every one
    /// is removed now.</summary>
    [Test]
    public async Task ARebindingAnswerOfHundredsOfLoopbackRecordsLosesEveryOne()
    {
        byte[] answer = await _harness.TcpAsync(DnsQueryBytes.Build(0x0B17, "rebind.x.test"));

        var addresses = new List<DnsAddressRecord>();
        Assert.That(DnsMessage.ExtractAddresses(answer, addresses), Is.EqualTo(DnsParseError.None));
        Assert.Multiple(() =>
        {
            Assert.That(answer[3] & 0x0F, Is.Zero, "NOERROR");
            Assert.That(addresses, Is.Empty, "no address left (NODATA)");
            Assert.That(_harness.EnclaveLog.Values(324, "Count"), Is.EqualTo(new[] { TestZone.RebindRecordCount.ToString(CultureInfo.InvariantCulture) }));
        });
    }

    /// <summary>An internal address in an answer that cannot be rewritten (a record type whose data the removal does
    /// not read) was passed on whole with a warning; the app now gets SERVFAIL with EDE Blocked (RFC 8914 §4.16).</summary>
    [Test]
    public async Task AnAnswerThatCannotLoseItsInternalAddressIsRefusedWithServFail()
    {
        var result = await _harness.Client().QueryAsync("opaque.x.test", QueryType.A);

        Assert.Multiple(() =>
        {
            Assert.That(result.Header.ResponseCode, Is.EqualTo(DnsHeaderResponseCode.ServerFailure));
            Assert.That(result.Answers, Is.Empty);
            Assert.That(_harness.EnclaveLog.Values(325, "Name"), Is.EqualTo(new[] { "opaque.x.test" }));
        });
    }

    /// <summary>From a security review: only the question's CNAME chain was checked for internal addresses, so an
    /// address record owned by another name passed with the answer, and musl's resolver (which does not compare owner
    /// names) handed the app 127.0.0.1. Every answer-section address record is checked now.</summary>
    [Test]
    public async Task AnInternalAddressOwnedByANameOffTheChainIsRemoved()
    {
        byte[] answer = await _harness.UdpAsync(DnsQueryBytes.Build(0x0B18, "offchain.x.test"));

        Assert.Multiple(() =>
        {
            Assert.That(answer[3] & 0x0F, Is.Zero, "NOERROR");
            Assert.That(AnswerAddresses(answer), Is.EqualTo(new[] { "198.18.0.32" }));
            Assert.That(_harness.EnclaveLog.Values(308, "Address"), Is.EqualTo(new[] { "127.0.0.1" }));
            Assert.That(_harness.EnclavePolicy.CheckAddress(IPAddress.Parse("198.18.0.32")).Reason, Is.EqualTo(DecisionReason.Learned));
        });
    }

    /// <summary>From a security review of the fix above: an off-chain <c>AAAA ::ffff:127.0.0.1</c> was refused as
    /// 127.0.0.1 and then not matched by the removal (IPv4 against IPv6), so it stayed once ::1 had been removed.</summary>
    [Test]
    public async Task AnIPv4MappedLoopbackOffTheChainGoesWithTheLoopbackOnIt()
    {
        byte[] answer = await _harness.UdpAsync(DnsQueryBytes.Build(0x0B1B, "mapped.x.test", type: 28));

        Assert.Multiple(() =>
        {
            Assert.That(answer[3] & 0x0F, Is.Zero, "NOERROR");
            Assert.That(AnswerAddresses(answer), Is.EqualTo(new[] { "2001:db8::33" }));
        });
    }

    /// <summary>From a security review: an answer whose CNAME chain the learner cannot follow (one link more than it
    /// allows) was passed on whole, loopback address and all. Its internal address records are removed now.</summary>
    [Test]
    public async Task AnInternalAddressAtTheEndOfATooLongChainIsRemoved()
    {
        byte[] answer = await _harness.TcpAsync(DnsQueryBytes.Build(0x0B19, "longchain.x.test"));

        Assert.Multiple(() =>
        {
            Assert.That(answer[3] & 0x0F, Is.Zero, "NOERROR");
            Assert.That(DnsQueryBytes.AnswerCount(answer), Is.EqualTo(TestZone.LongChainLinks), "the CNAMEs stay, the A record goes");
            Assert.That(AnswerAddresses(answer), Is.Empty);
            Assert.That(_harness.EnclaveLog.Values(308, "Address"), Is.EqualTo(new[] { "127.0.0.1" }));
            Assert.That(_harness.EnclaveLog.Values(309, "Error"), Is.EqualTo(new[] { nameof(DnsParseError.CnameChainTooLong) }));
        });
    }

    /// <summary>From a security review: an answer whose answer section does not parse was passed on unchecked; a stub
    /// resolver may read what the forwarder could not. It is refused with SERVFAIL (EDE Blocked) now.</summary>
    [Test]
    public async Task AnAnswerWhoseAnswerSectionCannotBeReadIsRefusedWithServFail()
    {
        byte[] query = DnsQueryBytes.Build(0x0B1A, "malformed.x.test");
        byte[] answer = await _harness.UdpAsync(query);

        Assert.Multiple(() =>
        {
            Assert.That(answer[3] & 0x0F, Is.EqualTo(2), "SERVFAIL");
            Assert.That(DnsQueryBytes.AnswerCount(answer), Is.Zero);
            Assert.That(_harness.EnclaveLog.Values(305, "Status"), Has.One.Contains("the answer cannot be read (BadRecordLength)"));
        });
    }

    /// <summary>The enclave and the parent keep a learned address for a day at most; an app that cached the answer for
    /// its 30 days would then be denied the address. Before, the TTLs reached the app as they came.</summary>
    [Test]
    public async Task NoTtlTheAppReadsIsAboveTheDayALearnedAddressIsKept()
    {
        var result = await _harness.Client().QueryAsync("longttl.x.test", QueryType.A);

        Assert.Multiple(() =>
        {
            Assert.That(result.HasError, Is.False, result.ErrorMessage);
            Assert.That(
                result.Answers.Select(record => (record.RecordType, record.InitialTimeToLive)),
                Is.EqualTo(new[] { (ResourceRecordType.CNAME, 86_400), (ResourceRecordType.A, 86_400), (ResourceRecordType.A, 60) }));
            Assert.That(_harness.EnclavePolicy.CheckAddress(IPAddress.Parse("198.18.0.34")).Reason, Is.EqualTo(DecisionReason.Learned));
        });
    }

    /// <summary>The address of every answer-section A/AAAA record, whatever its owner (as musl reads an answer).</summary>
    private static string[] AnswerAddresses(byte[] message)
    {
        var addresses = new List<string>();
        int offset = DnsHeader.Length;
        Assert.That(DnsName.Skip(message, offset, out offset), Is.EqualTo(DnsParseError.None));
        offset += 4;
        for (int i = 0; i < DnsQueryBytes.AnswerCount(message); i++)
        {
            Assert.That(DnsRecord.TryRead(message, offset, out DnsRecord record, out offset), Is.EqualTo(DnsParseError.None));
            if (record.IsAddress)
            {
                addresses.Add(new IPAddress(message.AsSpan(record.DataOffset, record.DataLength)).ToString());
            }
        }

        return [.. addresses];
    }

    /// <summary>From the app-runtime trial: an allowed name answered an internal address beside a public one, and
    /// curl, Python and Node took the internal one first (glibc sorts a unique-local AAAA before IPv4), were reset
    /// by the proxy and never tried the public one. The enclave takes the internal records out of the answer.</summary>
    [TestCase(QueryType.A, "10.0.0.5", "198.18.0.31")]
    [TestCase(QueryType.AAAA, "fd00::5", "2001:db8::31")]
    public async Task AnInternalAddressBesideAPublicOneIsRemovedAndThePublicOneLearned(QueryType type, string internalAddress, string publicAddress)
    {
        var result = await _harness.Client().QueryAsync("mixed.x.test", type);

        var answered = result.Answers.AddressRecords().Select(record => record.Address.ToString()).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(answered, Is.EqualTo(new[] { publicAddress }), () => $"{result.Header} {string.Join(", ", result.Answers)}");
            Assert.That(_harness.EnclavePolicy.CheckAddress(IPAddress.Parse(publicAddress)).Reason, Is.EqualTo(DecisionReason.Learned));
            Assert.That(_harness.EnclavePolicy.CheckAddress(IPAddress.Parse(internalAddress)).Reason, Is.EqualTo(DecisionReason.InternalRange));
            Assert.That(_harness.EnclaveLog.Values(308, "Address"), Does.Contain(internalAddress));
        });
    }

    [Test]
    public async Task LargeAnswerIsTruncatedForAUdpClientWithoutEdnsWhichThenGetsItAllOverTcp()
    {
        byte[] query = DnsQueryBytes.Build(0x0B16, "big.x.test");
        byte[] udpAnswer = await _harness.UdpAsync(query);

        // TC=1 with every whole record that fits 512 bytes (not none), which the client may use or retry over TCP.
        Assert.That(DnsQueryBytes.Truncated(udpAnswer), Is.True);
        Assert.That(udpAnswer, Has.Length.LessThanOrEqualTo(512));
        Assert.That(DnsQueryBytes.AnswerCount(udpAnswer), Is.InRange(1, TestZone.BigRecordCount - 1));
        Assert.That(udpAnswer[..2], Is.EqualTo(query[..2]));
        Assert.That(udpAnswer[12..query.Length], Is.EqualTo(query[12..]), "the question");
        var udpAddresses = new List<DnsAddressRecord>();
        Assert.That(DnsMessage.ExtractAddresses(udpAnswer, udpAddresses), Is.EqualTo(DnsParseError.None));
        Assert.That(udpAddresses, Has.Count.EqualTo(DnsQueryBytes.AnswerCount(udpAnswer)));

        byte[] tcpAnswer = await _harness.TcpAsync(query);
        var tcpAddresses = new List<DnsAddressRecord>();
        Assert.That(DnsMessage.ExtractAddresses(tcpAnswer, tcpAddresses), Is.EqualTo(DnsParseError.None));
        Assert.That(udpAddresses.Select(a => a.Address), Is.SubsetOf(tcpAddresses.Select(a => a.Address)));
        Assert.That(tcpAnswer, Has.Length.GreaterThan(512));
        Assert.That(DnsQueryBytes.Truncated(tcpAnswer), Is.False);
        Assert.That(DnsQueryBytes.AnswerCount(tcpAnswer), Is.EqualTo(TestZone.BigRecordCount));
        // The parent itself had to fall back to TCP for both: the upstream truncates a 512-byte client.
        Assert.That(_upstream.Queries.Select(q => q.Tcp), Is.EqualTo(new[] { false, true, false, true }));
    }

    [Test]
    public async Task LargeAnswerFitsAnEdnsClientsAdvertisedSizeOverUdp()
    {
        byte[] answer = await _harness.UdpAsync(DnsQueryBytes.Build(0x0E, "big.x.test", ednsSize: 4096));

        Assert.That(DnsQueryBytes.Truncated(answer), Is.False);
        Assert.That(DnsQueryBytes.AnswerCount(answer), Is.EqualTo(TestZone.BigRecordCount));
        Assert.That(_upstream.Queries.Select(q => q.Tcp), Is.EqualTo(new[] { false }));
    }

    [Test]
    public async Task DnsClientRetriesOverTcpAndGetsTheFullAnswer()
    {
        var result = await _harness.Client().QueryAsync("big.x.test", QueryType.A);

        Assert.That(result.HasError, Is.False, result.ErrorMessage);
        Assert.That(
            result.Answers.ARecords().Select(a => a.Address.ToString()),
            Is.EqualTo(Enumerable.Range(1, TestZone.BigRecordCount).Select(i => $"198.18.1.{i}")));
        Assert.That(_harness.EnclavePolicy.CheckAddress(IPAddress.Parse("198.18.1.40")).IsAllowed, Is.True);
    }

    [Test]
    public async Task MalformedQueriesNeverStopTheForwarder()
    {
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        socket.Connect(_harness.EndPoint);
        byte[][] garbage =
        [
            [0xFF],
            [1, 2, 3, 4, 5, 6, 7],
            new DnsMessageBuilder().Header(0x0F0F, 0x8180, 1, 0, 0, 0).Question("a.x.test").ToArray(), // a response: dropped
            [.. Enumerable.Range(0, 600).Select(i => (byte)(i * 37))],
        ];
        foreach (byte[] datagram in garbage)
        {
            await socket.SendAsync(datagram, System.Net.Sockets.SocketFlags.None);
        }

        // A header announcing one question whose name runs past the end: FORMERR without a question.
        byte[] cut = DnsQueryBytes.Build(0x0C07, "a.x.test")[..16];
        await socket.SendAsync(cut, System.Net.Sockets.SocketFlags.None);

        // Too short and response-flagged datagrams get nothing; the 600 random bytes (ID 0x0025, QR clear, opcode 9)
        // get NOTIMP.
        var answers = new[] { await DnsTunnelHarness.ReceiveAsync(socket), await DnsTunnelHarness.ReceiveAsync(socket) }.ToDictionary(a => DnsMessage.ReadId(a));
        Assert.That(answers.Keys, Is.EquivalentTo(new ushort[] { 0x0025, 0x0C07 }));
        Assert.That(DnsQueryBytes.Rcode(answers[0x0025]), Is.EqualTo(4));
        Assert.That(answers[0x0C07], Is.EqualTo(new byte[] { 0x0C, 0x07, 0x81, 0x81, 0, 0, 0, 0, 0, 0, 0, 0 }));

        // Two questions: FORMERR too; then a valid query is still answered.
        byte[] two = new DnsMessageBuilder().Header(0x0D0D, 0x0100, 2, 0, 0, 0).Question("a.x.test").Question("a.x.test").ToArray();
        await socket.SendAsync(two, System.Net.Sockets.SocketFlags.None);
        Assert.That(DnsQueryBytes.Rcode(await DnsTunnelHarness.ReceiveAsync(socket)), Is.EqualTo(1));

        await socket.SendAsync(DnsQueryBytes.Build(0x0A0A, "a.x.test"), System.Net.Sockets.SocketFlags.None);
        byte[] answer = await DnsTunnelHarness.ReceiveAsync(socket);
        Assert.That((DnsMessage.ReadId(answer), DnsQueryBytes.Rcode(answer), DnsQueryBytes.AnswerCount(answer)), Is.EqualTo(((ushort)0x0A0A, 0, 1)));
        Assert.That(_upstream.Queries.Select(q => q.Name), Is.EqualTo(new[] { "a.x.test" }));

        // On TCP an empty frame closes that connection only.
        using (var broken = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp))
        {
            await broken.ConnectAsync(_harness.EndPoint);
            await broken.SendAsync(new byte[] { 0, 0, 0, 12 }, System.Net.Sockets.SocketFlags.None);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            Assert.That(await broken.ReceiveAsync(new byte[16], System.Net.Sockets.SocketFlags.None, timeout.Token), Is.EqualTo(0));
        }

        var tcp = await _harness.TcpAsync(DnsQueryBytes.Build(0x0B0B, "a.x.test"));
        Assert.That((DnsMessage.ReadId(tcp), DnsQueryBytes.Rcode(tcp)), Is.EqualTo(((ushort)0x0B0B, 0)));
    }

    [Test]
    public async Task TwoHundredConcurrentQueriesWithCollidingClientIdsAreAllAnsweredCorrectly()
    {
        const int Clients = 4;
        const int PerClient = 50;
        var sockets = Enumerable.Range(0, Clients).Select(_ =>
        {
            var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
            s.Connect(_harness.EndPoint);
            return s;
        }).ToArray();
        try
        {
            // Every client uses IDs 1..50, so 4 queries with each ID are in flight at once: only ID rewriting keeps them apart.
            var receivers = sockets.Select(async (socket, c) =>
            {
                var got = new Dictionary<ushort, byte[]>();
                while (got.Count < PerClient)
                {
                    byte[] answer = await DnsTunnelHarness.ReceiveAsync(socket);
                    got[DnsMessage.ReadId(answer)] = answer;
                }

                return got;
            }).ToArray();
            await Task.WhenAll(sockets.SelectMany((socket, c) => Enumerable.Range(1, PerClient).Select(id =>
                socket.SendAsync(DnsQueryBytes.Build((ushort)id, $"n{(c * PerClient) + id}.x.test"), System.Net.Sockets.SocketFlags.None))));
            var results = await Task.WhenAll(receivers);

            for (int c = 0; c < Clients; c++)
            {
                for (ushort id = 1; id <= PerClient; id++)
                {
                    byte[] answer = results[c][id];
                    int n = (c * PerClient) + id;
                    Assert.That(DnsMessage.TryParseQuestion(answer.AsSpan(), out _, out _), Is.EqualTo(DnsParseError.NotAQuery));
                    var addresses = new List<DnsAddressRecord>();
                    Assert.That(DnsMessage.ExtractAddresses(answer, addresses), Is.EqualTo(DnsParseError.None));
                    Assert.That(addresses.Select(a => (a.OwnerName, a.Address.ToString())), Is.EqualTo(new[] { ($"n{n}.x.test", TestZone.AddressOf(n)) }));
                }
            }

            Assert.That(_upstream.Queries, Has.Count.EqualTo(Clients * PerClient));
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }
    }

    [Test]
    public async Task SpoofedUpstreamDatagramWithAWrongIdIsIgnored()
    {
        var result = await _harness.Client().QueryAsync("spoof.x.test", QueryType.A);

        Assert.That(result.Answers.ARecords().Single().Address, Is.EqualTo(IPAddress.Parse("198.18.0.30")));
        Assert.That(_harness.ParentPolicy.CheckAddress(IPAddress.Parse("6.6.6.6")).Reason, Is.EqualTo(DecisionReason.NeverLearned));
    }
}
