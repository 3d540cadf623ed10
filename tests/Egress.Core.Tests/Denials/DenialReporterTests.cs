using Egress.Configuration;
using System.Net;
using System.Net.Sockets;
using Egress.Denials;
using Egress.Gateway;
using Egress.Policy;
using Egress.Relay;
using Egress.Tests.Diagnostics;
using Egress.Tests.Gateway;
using Egress.Tunnel;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Denials;

/// <summary>
/// The enclave's denial reports end to end without root: a <see cref="DenialReporter"/> against a real
/// <see cref="TunnelGateway"/> on a Unix socket (the parent logs and counts each record), against a parent from before
/// the kind (a listener that answers UnsupportedKind, as such a parent does), and against none; and the parent against
/// reports that are not whole or not well-formed.
/// </summary>
public sealed class DenialReporterTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);
    private static readonly IPEndPoint Denied = new(IPAddress.Parse("198.51.100.7"), 443);

    private string _directory = null!;
    private TunnelEndpoint _endpoint = null!;
    private TelemetryProbe _parent = null!;
    private TelemetryProbe _enclave = null!;
    private FakeTimeProvider _time = null!;
    private TunnelGateway? _gateway;

    [SetUp]
    public void SetUp()
    {
        _directory = Directory.CreateTempSubdirectory("egress-denials-").FullName;
        _endpoint = TunnelEndpoint.Parse($"unix:{_directory}/tunnel.sock");
        _parent = new TelemetryProbe(TunnelSide.Host);
        _enclave = new TelemetryProbe(TunnelSide.Enclave);
        _time = new FakeTimeProvider();
    }

    [TearDown]
    public async Task TearDown()
    {
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }

        _parent.Dispose();
        _enclave.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Test]
    public async Task TheParentLogsAndCountsWhatTheEnclaveDenied()
    {
        StartGateway();
        using var counted = new MetricCollector<long>(_parent.Meters, Egress.Diagnostics.EgressMetrics.MeterName, "egress.enclave.denials");
        var tally = new DenialTally(_time, DenialDetail.Destinations);
        tally.Connection(Denied, DecisionReason.NeverLearned);
        tally.Connection(Denied, DecisionReason.NeverLearned);
        tally.DnsQuestion("evil.example", "A", DecisionReason.NameNotAllowed);
        tally.ServerName(Denied, "other.example", Egress.Tls.ServerNameRefusal.NotAllowed);
        _time.Advance(TimeSpan.FromSeconds(10));

        await Reporter(tally).ReportAsync(CancellationToken.None).WaitAsync(HangGuard);
        await _parent.Logs.WaitForEventAsync(232, HangGuard);
        await WaitUntilAsync(() => _parent.Logs.Records.Count(r => r.Id.Id == 232) == 3);

        Assert.Multiple(() =>
        {
            Assert.That(_parent.Logs.Records.Where(r => r.Id.Id == 232).Select(r => r.Message), Is.EquivalentTo(new[]
            {
                "enclave denied 2 connections to 198.51.100.7:443 (never_learned) in the last 10 s (its denial report)",
                "enclave denied 1 DNS question for evil.example A (name_not_allowed) in the last 10 s (its denial report)",
                "enclave denied 1 TLS connection at the server-name check: 198.51.100.7:443 server name other.example (not_allowed) in the last 10 s (its denial report)",
            }));
            Assert.That(counted.GetMeasurementSnapshot().Select(m => (m.Value, m.Tags["egress.kind"], m.Tags["egress.reason"])), Is.EquivalentTo(new (long, object?, object?)[]
            {
                (2, "connection", "never_learned"), (1, "dns_question", "name_not_allowed"), (1, "server_name", "not_allowed"),
            }));
            Assert.That(_enclave.EventIds, Is.EqualTo(new[] { 135 }), "delivered, at Debug");
            Assert.That(_parent.TunnelErrors, Is.Empty);
            Assert.That(tally.Take().Records, Is.Empty, "sent once");
        });
    }

    [Test]
    public async Task TheParentSaysOnceThatTheEnclaveReadsTheSamePolicyAndCountsNoDenialForIt()
    {
        var digest = Digest("[egress]\nenabled = true\ndestinations = [\"api.example.com\"]\n");
        StartGateway(parentPolicy: digest);
        using var counted = new MetricCollector<long>(_parent.Meters, Egress.Diagnostics.EgressMetrics.MeterName, "egress.enclave.denials");
        var tally = new DenialTally(_time, DenialDetail.Destinations);
        var reporter = Reporter(tally, digest);

        await reporter.ReportAsync(CancellationToken.None).WaitAsync(HangGuard); // nothing denied: the digest alone, at the first tick
        var match = await _parent.Logs.WaitForEventAsync(235, HangGuard);
        tally.Connection(Denied, DecisionReason.NeverLearned);
        _time.Advance(TimeSpan.FromSeconds(10));
        await reporter.ReportAsync(CancellationToken.None).WaitAsync(HangGuard); // a denial: the digest first, then its record
        await _parent.Logs.WaitForEventAsync(232, HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(match.Message, Is.EqualTo($"the enclave reads the same policy as this parent's for it ({digest}; its denial report)"));
            Assert.That(_parent.Logs.Records.Count(r => r.Id.Id == 235), Is.EqualTo(1), "said once, not every report");
            Assert.That(_parent.Logs.Records.Where(r => r.Id.Id == 232).Select(r => r.Message), Is.EqualTo(new[]
            {
                "enclave denied 1 connection to 198.51.100.7:443 (never_learned) in the last 10 s (its denial report)",
            }), "the digest is not a denial");
            Assert.That(counted.GetMeasurementSnapshot().Select(m => (m.Value, m.Tags["egress.kind"])), Is.EqualTo(new (long, object?)[] { (1, "connection") }));
            Assert.That(_enclave.EventIds, Is.EqualTo(new[] { 136, 135 }), "the digest alone, then a report of one denial");
            Assert.That(_parent.TunnelErrors, Is.Empty);
        });
    }

    [Test]
    public async Task TheParentWarnsOncePerDigestWhenTheEnclaveReadsAnotherPolicy()
    {
        var parent = Digest("[egress]\nenabled = true\ndestinations = [\"api.example.com\", \"new.example.com\"]\n");
        var enclave = Digest("[egress]\nenabled = true\ndestinations = [\"api.example.com\"]\n");
        StartGateway(parentPolicy: parent, policySource: "/etc/egress/enclave.toml");
        var tally = new DenialTally(_time, DenialDetail.Destinations);

        await Reporter(tally, enclave).ReportAsync(CancellationToken.None).WaitAsync(HangGuard);
        var warning = await _parent.Logs.WaitForEventAsync(236, HangGuard);
        _time.Advance(DenialReporter.DefaultInterval); // reports come 10 s apart (one report's lines a second)
        await SendReportAsync(DenialReportCodec.PolicyRecord(enclave)); // the same digest again: already said
        _time.Advance(DenialReporter.DefaultInterval);
        await SendReportAsync(DenialReportCodec.PolicyRecord(parent)); // the enclave now reads the parent's: said
        await WaitUntilAsync(() => _parent.Logs.Records.Any(r => r.Id.Id == 235));

        Assert.Multiple(() =>
        {
            Assert.That(warning.Level, Is.EqualTo(Microsoft.Extensions.Logging.LogLevel.Warning));
            Assert.That(warning.Message, Does.StartWith($"the enclave reads policy {enclave}, but this parent's for it is {parent} (/etc/egress/enclave.toml): the two enclave.toml files differ"));
            Assert.That(_parent.Logs.Records.Count(r => r.Id.Id == 236), Is.EqualTo(1), "once per digest");
            Assert.That(_parent.Logs.Records.Count(r => r.Id.Id == 232), Is.Zero, "no denial was reported");
        });
    }

    [Test]
    public async Task PolicyRecordsOfAHostilePeerAreHeldToTheRateLimitOfItsLines()
    {
        // Code in the enclave can open report streams itself: 64 policy records a report, alternating two digests, and
        // reports as fast as streams open, must not each be a warning line. The digest is the report's first record,
        // and it is compared only when the report's lines are let through (one report's lines a second per CID).
        var parent = Digest("[egress]\nenabled = true\ndestinations = [\"api.example.com\"]\n");
        var one = Digest("[egress]\nenabled = true\ndestinations = [\"one.example.com\"]\n");
        var two = Digest("[egress]\nenabled = true\ndestinations = [\"two.example.com\"]\n");
        StartGateway(parentPolicy: parent);

        await SendReportAsync([.. Enumerable.Range(0, DenialReportCodec.MaxRecords).Select(i => DenialReportCodec.PolicyRecord(i % 2 == 0 ? one : two))]);
        for (int i = 0; i < 10; i++)
        {
            await SendReportAsync(DenialReportCodec.PolicyRecord(i % 2 == 0 ? two : one)); // within the same second: held back
        }

        Assert.That(_parent.Logs.Records.Count(r => r.Id.Id == 236), Is.EqualTo(1));
    }

    [Test]
    public async Task TheDigestAloneIsSentAgainOnlyAfterItsInterval()
    {
        var streams = StartStreamCountingGateway();
        var reporter = Reporter(new DenialTally(_time, DenialDetail.Destinations), Digest("[egress]\nenabled = true\n"));

        await reporter.ReportAsync(CancellationToken.None).WaitAsync(HangGuard);
        _time.Advance(DenialReporter.PolicyInterval - TimeSpan.FromSeconds(1));
        await reporter.ReportAsync(CancellationToken.None).WaitAsync(HangGuard);
        int beforeInterval = streams();
        _time.Advance(TimeSpan.FromSeconds(1));
        await reporter.ReportAsync(CancellationToken.None).WaitAsync(HangGuard);

        Assert.That((beforeInterval, streams()), Is.EqualTo((1, 2)));
    }

    [Test]
    public async Task AReporterWithoutADigestSendsNothingWhenNothingWasDenied()
    {
        var streams = StartStreamCountingGateway();

        await Reporter(new DenialTally(_time, DenialDetail.Destinations)).ReportAsync(CancellationToken.None).WaitAsync(HangGuard);

        Assert.That(streams(), Is.Zero);
    }

    [Test]
    public async Task ANameTheEnclaveWithholdsIsSaidToBeWithheld()
    {
        StartGateway();
        var tally = new DenialTally(_time, DenialDetail.Counts);
        tally.DnsQuestion("c2VjcmV0.attacker.example", "TXT", DecisionReason.NameNotAllowed);

        await Reporter(tally).ReportAsync(CancellationToken.None).WaitAsync(HangGuard);
        var line = await _parent.Logs.WaitForEventAsync(232, HangGuard);

        Assert.That(line.Message, Does.StartWith("enclave denied 1 DNS question for (not named: enclave.report_denials = \"counts\", or past the destinations one report names) (name_not_allowed)"));
        Assert.That(line.Message, Does.Not.Contain("attacker"));
    }

    [Test]
    public async Task AParentFromBeforeTheKindIsWarnedAboutOnceAndAskedAgainAfterTheBackOff()
    {
        // What a parent from before denial reports answers: the kind is not one it knows (a v1 response, UnsupportedKind).
        using var oldParent = _endpoint.Listen();
        int streams = 0;
        var answering = Task.Run(async () =>
        {
            while (true)
            {
                using Socket stream = await oldParent.AcceptAsync();
                Interlocked.Increment(ref streams);
                await TunnelWire.ReadExactlyAsync(stream, new byte[4]); // read first, as such a parent does: else its close resets the stream
                await stream.SendAsync(Hex(TunnelCodec.Version, (byte)TunnelStatus.UnsupportedKind, 0));
                stream.Shutdown(SocketShutdown.Both);
            }
        });
        var tally = new DenialTally(_time, DenialDetail.Destinations);
        var reporter = Reporter(tally);

        tally.Connection(Denied, DecisionReason.NeverLearned);
        await reporter.ReportAsync(CancellationToken.None).WaitAsync(HangGuard);
        tally.Connection(Denied, DecisionReason.NeverLearned);
        await reporter.ReportAsync(CancellationToken.None).WaitAsync(HangGuard);
        int duringBackOff = Volatile.Read(ref streams);
        _time.Advance(DenialReporter.UnsupportedBackoff);
        tally.Connection(Denied, DecisionReason.NeverLearned);
        await reporter.ReportAsync(CancellationToken.None).WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(duringBackOff, Is.EqualTo(1), "not asked again within the back-off");
            Assert.That(Volatile.Read(ref streams), Is.EqualTo(2), "asked again after it");
            Assert.That(_enclave.EventIds, Is.EqualTo(new[] { 132, 134 }), "one warning, then Debug");
            Assert.That(_enclave.Logs.Records[0].Message, Does.Contain("does not take them").And.Contain("1 denials of this report were not sent").And.Contain("asking again in 10 min"));
            Assert.That(answering.IsFaulted, Is.False);
        });
    }

    [Test]
    public async Task AReportThatFindsNoParentIsSentWithTheNext()
    {
        var tally = new DenialTally(_time, DenialDetail.Destinations);
        var reporter = Reporter(tally);
        tally.Connection(Denied, DecisionReason.NeverLearned);
        await reporter.ReportAsync(CancellationToken.None).WaitAsync(HangGuard);

        StartGateway();
        tally.Connection(Denied, DecisionReason.NeverLearned);
        await reporter.ReportAsync(CancellationToken.None).WaitAsync(HangGuard);
        var line = await _parent.Logs.WaitForEventAsync(232, HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(line.Message, Does.StartWith("enclave denied 2 connections to 198.51.100.7:443 (never_learned)"));
            Assert.That(_enclave.EventIds, Is.EqualTo(new[] { 134, 135 }), "not delivered (Debug), then delivered");
            Assert.That(_enclave.Logs.Records[0].Message, Does.Contain("no socket at"));
        });
    }

    [TestCase("01 00000000", "record 2: ZeroCount")]
    [TestCase("01 00000001 0000 03 61 41", "record 2: BadReason")]
    [TestCase("", "the stream ended before the end byte")]
    public async Task AReportThatIsNotWholeIsAStreamFailureAfterTheRecordsBeforeIt(string tail, string fault)
    {
        StartGateway();
        var good = new byte[DenialReportCodec.MaxRecordLength];
        int length = DenialReportCodec.WriteRecord(new DenialRecord(DenialKind.Connection, "never_learned", 4, 10, "198.51.100.7:443"), good);
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await TunnelWire.SendAsync(stream, TunnelRequest.ForDenialReport());
        var response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        byte[] sent = [.. good.AsSpan(0, length), .. Convert.FromHexString(tail.Replace(" ", "", StringComparison.Ordinal))];
        await stream.SendAsync(sent);
        stream.Shutdown(SocketShutdown.Send);
        await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard);
        var failed = await _parent.Logs.WaitForEventAsync(209, HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(response.Status, Is.EqualTo(TunnelStatus.Ok));
            Assert.That(_parent.Logs.Records.Single(r => r.Id.Id == 232).Message, Does.StartWith("enclave denied 4 connections to 198.51.100.7:443"));
            Assert.That(failed.Message, Is.EqualTo($"stream failed: denial report from the enclave not whole: {fault} (the 1 records before it were logged)"));
            Assert.That(_parent.TunnelErrors, Is.EqualTo(new[] { "stream_failed" }));
        });
    }

    [Test]
    public async Task AReasonThisParentDoesNotKnowIsLoggedButCountedAsOther()
    {
        // The reason is the enclave's text: a peer must not be able to add metric series at will.
        StartGateway();
        using var counted = new MetricCollector<long>(_parent.Meters, Egress.Diagnostics.EgressMetrics.MeterName, "egress.enclave.denials");
        byte[] answered = await SendReportAsync(new DenialRecord((DenialKind)9, "made_up_0001", 1, 10, "x"));
        var line = await _parent.Logs.WaitForEventAsync(232, HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(line.Message, Is.EqualTo("enclave denied 1 denials of kind 9: (a subject in no shape egress-enclave writes, 1 characters, not shown) (made_up_0001) in the last 10 s (its denial report)"));
            Assert.That(answered, Is.EqualTo(new[] { DenialReportCodec.Receipt }), "read whole and logged: the receipt");
            Assert.That(counted.GetMeasurementSnapshot().Select(m => (m.Tags["egress.kind"], m.Tags["egress.reason"])), Is.EqualTo(new (object?, object?)[] { ("other", "other") }));
        });
    }

    /// <summary>Any process in the enclave can send a report of its own: a subject shaped like a report-mode line
    /// became, in the parent's line, an entry <c>report-to-allowlist</c> proposed (or a name it left out).</summary>
    [TestCase("report mode: would deny connection to 203.0.113.66:443 (name exfil.attacker.example): x")]
    [TestCase("connection to 198.51.100.20:443 (for api.example.com) denied: internal range x; report mode does not relax internal addresses")]
    public async Task ASubjectInNoShapeTheEnclaveWritesIsNotShownAuditedOrReadAsALine(string injected)
    {
        var output = new MemoryStream();
        var audit = new Egress.Audit.AuditLog(output, "memory", _parent.Logger, _time);
        StartGateway(audit: audit);
        await SendOneRecordReportAsync(injected);
        var line = await _parent.Logs.WaitForEventAsync(232, HangGuard);
        await audit.DisposeAsync();
        var reported = new ReportedDestinations();
        reported.Add(line.Message);
        reported.Add("report mode: would deny connection to 198.51.100.20:443 (name api.example.com): name api.example.com not in allowlist; allowed");

        Assert.Multiple(() =>
        {
            Assert.That(line.Message, Is.EqualTo($"enclave denied 1 connection to (a subject in no shape egress-enclave writes, {injected.Length} characters, not shown) (never_learned) in the last 10 s (its denial report)"));
            Assert.That(reported.Entries(), Is.EqualTo(new[] { "api.example.com:443" }), "nothing proposed from the injected text, and the genuine entry kept");
            Assert.That(System.Text.Encoding.UTF8.GetString(output.ToArray()), Does.Contain("not shown").And.Not.Contain("example"), "the audit record");
        });
    }

    /// <summary>The security review: any process in the enclave could hold every report slot (Ok, then the end byte
    /// just before the header timeout, again and again), and egress-enclave's own reports, its denials and its policy
    /// digest, were refused for as long as it did. A report stream beyond the limit now ends the oldest one instead.</summary>
    [Test]
    public async Task APeerHoldingEveryReportStreamDoesNotKeepTheEnclavesReportOut()
    {
        var parentDigest = Digest("[egress]\ndestinations = [\"a.example\"]\n");
        var enclaveDigest = Digest("[egress]\ndestinations = [\"*\"]\n");
        StartGateway(parentPolicy: parentDigest);
        var tally = new DenialTally(_time, DenialDetail.Destinations);
        for (int i = 0; i < 50; i++)
        {
            tally.Connection(Denied, DecisionReason.NeverLearned);
        }

        _time.Advance(TimeSpan.FromSeconds(10));
        var held = new List<Socket>();
        try
        {
            await HoldEveryReportStreamAsync(held);

            await Reporter(tally, enclaveDigest).ReportAsync(CancellationToken.None).WaitAsync(HangGuard);
            var denied = await _parent.Logs.WaitForEventAsync(232, HangGuard);
            var differs = await _parent.Logs.WaitForEventAsync(236, HangGuard);
            var oldest = await TunnelWire.ReadToEndAsync(held[0]).WaitAsync(HangGuard);
            await WaitUntilAsync(() => _parent.Logs.Records.Any(r => r.Id.Id == 209));

            Assert.Multiple(() =>
            {
                Assert.That(denied.Message, Is.EqualTo("enclave denied 50 connections to 198.51.100.7:443 (never_learned) in the last 10 s (its denial report)"));
                Assert.That(differs.Message, Does.StartWith($"the enclave reads policy {enclaveDigest}, but this parent's for it is {parentDigest}"));
                Assert.That(tally.Take().Records, Is.Empty, "delivered, not put back for the next report");
                Assert.That(oldest, Is.Empty, "the oldest held stream was ended without a receipt");
                Assert.That(_parent.Logs.Records.Where(r => r.Id.Id == 209).Select(r => r.Message), Is.EqualTo(new[]
                {
                    $"stream failed: denial report from the enclave not whole: {DenialReportReceiver.EvictedFault} (none of its records were logged: with no receipt the enclave sends them again)",
                }));
            });
        }
        finally
        {
            held.ForEach(s => s.Dispose());
        }
    }

    /// <summary>A report stream beyond the limit ends the oldest of its own peer's, so one enclave's streams cannot end
    /// another's reads on a gateway that serves several CIDs; the globally oldest only when its peer has none. An ended
    /// read's records are not logged: the enclave, with no receipt, sends them again.</summary>
    [Test]
    public async Task AReportStreamBeyondTheLimitEndsTheOldestOfItsOwnPeer()
    {
        var cids = new System.Collections.Concurrent.ConcurrentQueue<uint>([16, 16, 16, 17, 17]);
        StartGateway(peerCid: _ => cids.TryDequeue(out uint cid) ? cid : 99);
        var held = new List<Socket>();
        try
        {
            await HoldEveryReportStreamAsync(held);

            // CID 17's second stream ends CID 17's first (the fourth held), not CID 16's first, the oldest of all.
            byte[] answered = await SendReportAsync(new DenialRecord(DenialKind.Connection, "never_learned", 1, 10, "198.51.100.7:443"));
            var ended = await TunnelWire.ReadToEndAsync(held[3]).WaitAsync(HangGuard);
            await WaitUntilAsync(() => _parent.Logs.Records.Any(r => r.Id.Id == 209));
            bool oldestStillOpen = !held[0].Poll(200_000, SelectMode.SelectRead);

            Assert.Multiple(() =>
            {
                Assert.That(answered, Is.EqualTo(new[] { DenialReportCodec.Receipt }));
                Assert.That(ended, Is.Empty, "CID 17's held stream was ended");
                Assert.That(oldestStillOpen, Is.True, "CID 16's streams are still being read");
                Assert.That(_parent.Logs.Records.Single(r => r.Id.Id == 209).Message, Does.Contain("from the enclave CID 17 not whole"));
            });
        }
        finally
        {
            held.ForEach(s => s.Dispose());
        }
    }

    /// <summary>The code review: the digest was compared only when the report's lines were let through, so a peer's
    /// one-record report in the same second kept egress-enclave's policy mismatch out of the log, and the enclave,
    /// which got its receipt, never sent it again.</summary>
    [Test]
    public async Task APeersReportInTheSameSecondDoesNotKeepThePolicyComparisonOut()
    {
        var parentDigest = Digest("[egress]\ndestinations = [\"a.example\"]\n");
        var enclaveDigest = Digest("[egress]\ndestinations = [\"*\"]\n");
        StartGateway(parentPolicy: parentDigest);
        await SendOneRecordReportAsync("198.51.100.1:443"); // the peer's: takes this second's line
        await _parent.Logs.WaitForEventAsync(232, HangGuard);

        await Reporter(new DenialTally(_time, DenialDetail.Destinations), enclaveDigest).ReportAsync(CancellationToken.None).WaitAsync(HangGuard);
        var differs = await _parent.Logs.WaitForEventAsync(236, HangGuard);

        Assert.That(differs.Message, Does.StartWith($"the enclave reads policy {enclaveDigest}, but this parent's for it is {parentDigest}"));
    }

    /// <summary>A report with no record takes no turn of the line limit: a peer's empty reports, each second, would
    /// otherwise hold back egress-enclave's lines.</summary>
    [Test]
    public async Task AnEmptyReportDoesNotHoldBackTheNextReportsLines()
    {
        StartGateway();
        await SendReportAsync(Array.Empty<DenialRecord>());
        await SendOneRecordReportAsync("198.51.100.1:443");
        var line = await _parent.Logs.WaitForEventAsync(232, HangGuard);

        Assert.That(line.Message, Is.EqualTo("enclave denied 1 connection to 198.51.100.1:443 (never_learned) in the last 10 s (its denial report)"));
    }

    [Test]
    public async Task AReportHeldBackByTheRateLimitIsSaidByTheNextOneLogged()
    {
        // Reports more often than one a second (several enclaves on one gateway, a report and the one at a stop): the
        // held-back count must not be taken by the next report let through and then dropped.
        StartGateway();
        await SendOneRecordReportAsync("198.51.100.1:443");
        _time.Advance(TimeSpan.FromMilliseconds(500));
        await SendOneRecordReportAsync("198.51.100.2:443"); // held back
        _time.Advance(TimeSpan.FromMilliseconds(600));
        await SendOneRecordReportAsync("198.51.100.3:443"); // let through
        _time.Advance(TimeSpan.FromSeconds(3)); // past any summary's timer
        await WaitUntilAsync(() => _parent.Logs.Records.Count(r => r.Id.Id == 232) == 2);

        Assert.That(_parent.Logs.Records.Where(r => r.Id.Id is 16 or 234).Select(r => r.Message), Is.EqualTo(new[]
        {
            "1 more denial reports of the enclave were held back by the limit of one report's lines a second since its last report logged (their records are counted in egress.enclave.denials)",
        }));
    }

    [Test]
    public async Task TheParentAuditsEveryRecordAlsoThoseWhoseLinesAreHeldBack()
    {
        // The enclave's own audit log is inside the enclave (unreadable in production): the parent's is the account of
        // what the enclave denied, so it is not rate-limited as the lines are.
        var output = new MemoryStream();
        var audit = new Egress.Audit.AuditLog(output, "memory", _parent.Logger, _time);
        StartGateway(_ => 16, audit);
        await SendOneRecordReportAsync("198.51.100.1:443");
        await SendReportAsync(new DenialRecord(DenialKind.DnsQuestion, "name_not_allowed", 3, 10, string.Empty)); // held back in the log
        await WaitUntilAsync(() => _parent.Logs.Records.Any(r => r.Id.Id == 232));
        await audit.DisposeAsync();

        var lines = System.Text.Encoding.UTF8.GetString(output.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Multiple(() =>
        {
            Assert.That(_parent.Logs.Records.Count(r => r.Id.Id == 232), Is.EqualTo(1), "the second report's line is held back");
            Assert.That(lines.Select(line => System.Text.RegularExpressions.Regex.Replace(line, "\"time\":\"[^\"]+\",", string.Empty)), Is.EqualTo(new[]
            {
                """{"side":"parent","cid":16,"decision":"denied","reason":"never_learned","decision_text":"the enclave denied 1 connection to 198.51.100.1:443 in the last 10 s (its denial report)","outcome":"denied_in_enclave","denial_report":{"kind":"connection","subject":"198.51.100.1:443","count":1,"period_s":10}}""",
                """{"side":"parent","cid":16,"decision":"denied","reason":"name_not_allowed","decision_text":"the enclave denied 3 DNS questions for (not named: enclave.report_denials = \"counts\", or past the destinations one report names) in the last 10 s (its denial report)","outcome":"denied_in_enclave","denial_report":{"kind":"dns_question","count":3,"period_s":10}}""",
            }));
        });
    }

    [Test]
    public async Task TwoEnclavesReportingInTheSameSecondAreBothLogged()
    {
        // The review: one line limit per gateway let one enclave's report hide another's, every 10 s for good when their
        // timers ticked in the same second. The limit is per CID now (the peer's VSOCK address, which it cannot choose).
        uint next = 16;
        StartGateway(_ => next++);
        await SendOneRecordReportAsync("198.51.100.1:443");
        _time.Advance(TimeSpan.FromMilliseconds(300));
        await SendOneRecordReportAsync("198.51.100.2:443");
        await WaitUntilAsync(() => _parent.Logs.Records.Count(r => r.Id.Id == 232) == 2);

        Assert.That(_parent.Logs.Records.Where(r => r.Id.Id == 232).Select(r => r.Message), Is.EqualTo(new[]
        {
            "enclave CID 16 denied 1 connection to 198.51.100.1:443 (never_learned) in the last 10 s (its denial report)",
            "enclave CID 17 denied 1 connection to 198.51.100.2:443 (never_learned) in the last 10 s (its denial report)",
        }));
    }

    [Test]
    public async Task AReportTheParentClosesWithoutAReceiptIsSentAgainWithTheNext()
    {
        // The review: a close was the receipt, so a parent that could not take a report (its own stop, a timeout) and
        // closed the stream made the enclave count it delivered. Only the receipt byte does now.
        using (var closing = _endpoint.Listen())
        {
            var serving = Task.Run(async () =>
            {
                using Socket stream = await closing.AcceptAsync();
                await TunnelWire.ReadExactlyAsync(stream, new byte[4]);
                await stream.SendAsync(Hex(TunnelCodec.Version, (byte)TunnelStatus.Ok, 0));
                await TunnelWire.ReadToEndAsync(stream);
                stream.Shutdown(SocketShutdown.Both); // no receipt
            });
            var tally = new DenialTally(_time, DenialDetail.Destinations);
            var reporter = Reporter(tally);
            tally.Connection(Denied, DecisionReason.NeverLearned);
            await reporter.ReportAsync(CancellationToken.None).WaitAsync(HangGuard);
            await serving.WaitAsync(HangGuard);
            closing.Dispose();

            StartGateway();
            tally.Connection(Denied, DecisionReason.NeverLearned);
            await reporter.ReportAsync(CancellationToken.None).WaitAsync(HangGuard);
            var line = await _parent.Logs.WaitForEventAsync(232, HangGuard);

            Assert.Multiple(() =>
            {
                Assert.That(_enclave.Logs.Records[0].Message, Does.Contain("without a receipt"));
                Assert.That(line.Message, Does.StartWith("enclave denied 2 connections to 198.51.100.7:443 (never_learned)"));
            });
        }
    }

    [Test]
    public async Task AReportInFlightAtAStopIsNotSentAgainByTheLastReport()
    {
        // A parent that has read the report closes the stream a little later (its lines are logged first): a stop in
        // between must not cancel the report, count it back into the tally and send the same denials again.
        using var parent = _endpoint.Listen();
        int reports = 0;
        var readOne = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var done = new CancellationTokenSource();
        var serving = Task.Run(async () =>
        {
            while (!done.IsCancellationRequested)
            {
                using Socket stream = await parent.AcceptAsync(done.Token);
                await TunnelWire.ReadExactlyAsync(stream, new byte[4]);
                await stream.SendAsync(Hex(TunnelCodec.Version, (byte)TunnelStatus.Ok, 0));
                await TunnelWire.ReadToEndAsync(stream); // the records, the end byte, then the enclave's shutdown
                Interlocked.Increment(ref reports);
                readOne.TrySetResult();
                await Task.Delay(300);
                await stream.SendAsync(new[] { DenialReportCodec.Receipt });
                stream.Shutdown(SocketShutdown.Both);
            }
        });
        var tally = new DenialTally(_time, DenialDetail.Destinations);
        var reporter = Reporter(tally);
        reporter.Start();
        tally.Connection(Denied, DecisionReason.NeverLearned);
        _time.Advance(DenialReporter.DefaultInterval);
        await readOne.Task.WaitAsync(HangGuard);

        await reporter.StopAsync().WaitAsync(HangGuard);
        await Task.Delay(100); // a second report, if one were sent, would be read by now
        await done.CancelAsync();

        Assert.Multiple(() =>
        {
            Assert.That(Volatile.Read(ref reports), Is.EqualTo(1), "the one denial reported once");
            Assert.That(_enclave.EventIds, Is.EqualTo(new[] { 135 }), "delivered");
        });
        await serving.ContinueWith(_ => { }, TaskScheduler.Default);
    }

    /// <summary>Opens <see cref="DenialReportReceiver.MaxOpen"/> report streams, each answered Ok, and sends nothing on
    /// them, as a peer that holds every report slot does; adds each to <paramref name="held"/> as it opens.</summary>
    private async Task HoldEveryReportStreamAsync(List<Socket> held)
    {
        for (int i = 0; i < DenialReportReceiver.MaxOpen; i++)
        {
            Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
            held.Add(stream);
            await TunnelWire.SendAsync(stream, TunnelRequest.ForDenialReport());
            Assert.That((await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard)).Status, Is.EqualTo(TunnelStatus.Ok));
        }
    }

    private Task SendOneRecordReportAsync(string subject) => SendReportAsync(new DenialRecord(DenialKind.Connection, "never_learned", 1, 10, subject));

    /// <summary>Sends a one-record report as an enclave would; returns what the parent sent after its Ok.</summary>
    private Task<byte[]> SendReportAsync(DenialRecord record) => SendReportAsync([record]);

    /// <summary>Sends a report of <paramref name="records"/>; returns what the parent sent after its Ok.</summary>
    private async Task<byte[]> SendReportAsync(DenialRecord[] records)
    {
        var bytes = new byte[DenialReportCodec.MaxReportLength];
        int length = 0;
        foreach (var record in records)
        {
            length += DenialReportCodec.WriteRecord(record, bytes.AsSpan(length));
        }

        bytes[length++] = DenialReportCodec.End;
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await TunnelWire.SendAsync(stream, TunnelRequest.ForDenialReport());
        await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        await stream.SendAsync(bytes.AsMemory(0, length));
        return await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard);
    }

    private DenialReporter Reporter(DenialTally tally, Egress.Configuration.PolicyDigest? policy = null) => new(tally, _endpoint, TimeSpan.FromSeconds(5), _time, _enclave.Logger, policy);

    /// <summary>Starts the gateway counting the report streams it reads (each asks for its peer's CID once).</summary>
    private Func<int> StartStreamCountingGateway()
    {
        int streams = 0;
        StartGateway(peerCid: _ =>
        {
            Interlocked.Increment(ref streams);
            return null;
        });
        return () => Volatile.Read(ref streams);
    }

    private static Egress.Configuration.PolicyDigest Digest(string toml) =>
        Egress.Configuration.ConfiguredComponents.GetPolicyDigest(Egress.Configuration.EgressConfiguration.Parse(toml, "enclave.toml"));

    private void StartGateway(
        Func<Socket, uint?>? peerCid = null, Egress.Audit.AuditLog? audit = null, Egress.Configuration.PolicyDigest? parentPolicy = null, string? policySource = null)
    {
        var policy = EgressPolicy.Create(true, ["198.51.100.9"], new AllowlistCache(new AllowlistCacheOptions()));
        var options = new TunnelGatewayOptions
        {
            Listen = _endpoint,
            Relay = new RelayOptions { TimeProvider = _time },
            Metrics = _parent.Metrics,
            DnsUpstreams = [new IPEndPoint(IPAddress.Loopback, 9)],
            PeerCid = peerCid ?? GatewayEnclave.PeerCidOf,
            Audit = audit,
        };
        if (parentPolicy is not null)
        {
            options = options.WithPolicy(parentPolicy, policySource);
        }

        _gateway = new TunnelGateway(options, policy, _parent.LoggerFactory);
        _gateway.Start();
    }

    private static byte[] Hex(params byte[] bytes) => bytes;

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + HangGuard;
        while (!condition())
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "timed out");
            await Task.Delay(10);
        }
    }
}
