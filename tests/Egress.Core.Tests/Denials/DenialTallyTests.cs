using System.Net;
using Egress.Denials;
using Egress.Policy;
using Egress.Tls;
using Egress.Tunnel;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Denials;

/// <summary>The enclave's counts of its own denials between two reports: what one record says, what
/// <c>"counts"</c> withholds, the bound on memory under a flood of new destinations, and a report put back.</summary>
public sealed class DenialTallyTests
{
    private static readonly IPEndPoint Denied = new(IPAddress.Parse("198.51.100.7"), 443);

    [Test]
    public void DenialsOfOneKindReasonAndDestinationAreOneRecordOverTheirPeriod()
    {
        var time = new FakeTimeProvider();
        var tally = new DenialTally(time, DenialDetail.Destinations);
        tally.Connection(Denied, DecisionReason.NeverLearned);
        time.Advance(TimeSpan.FromSeconds(4.2));
        tally.Connection(Denied, DecisionReason.NeverLearned);
        tally.Connection(new IPEndPoint(IPAddress.Parse("2001:db8::1"), 80), DecisionReason.InternalRange);
        tally.DnsQuestion("evil.example", "A", DecisionReason.NameNotAllowed);
        tally.ServerName(Denied, "other.example", ServerNameRefusal.NotAllowed);
        tally.ServerName(Denied, null, ServerNameRefusal.NoServerName);

        var (records, _) = tally.Take();

        Assert.Multiple(() =>
        {
            Assert.That(records, Is.EquivalentTo(new[]
            {
                new DenialRecord(DenialKind.Connection, "never_learned", 2, 5, "198.51.100.7:443"),
                new DenialRecord(DenialKind.Connection, "internal_range", 1, 5, "[2001:db8::1]:80"),
                new DenialRecord(DenialKind.DnsQuestion, "name_not_allowed", 1, 5, "evil.example A"),
                new DenialRecord(DenialKind.ServerName, "not_allowed", 1, 5, "198.51.100.7:443 server name other.example"),
                new DenialRecord(DenialKind.ServerName, "no_server_name", 1, 5, "198.51.100.7:443 server name (none)"),
            }));
            Assert.That(tally.Take().Records, Is.Empty, "taken");
        });
    }

    [Test]
    public void CountsModeSendsNoAddressOrName()
    {
        var tally = new DenialTally(new FakeTimeProvider(), DenialDetail.Counts);
        tally.Connection(Denied, DecisionReason.NeverLearned);
        tally.Connection(new IPEndPoint(IPAddress.Parse("198.51.100.8"), 443), DecisionReason.NeverLearned);
        tally.DnsQuestion("c2VjcmV0.attacker.example", "TXT", DecisionReason.NameNotAllowed);

        var (records, _) = tally.Take();

        Assert.That(records, Is.EquivalentTo(new[]
        {
            new DenialRecord(DenialKind.Connection, "never_learned", 2, 0, string.Empty),
            new DenialRecord(DenialKind.DnsQuestion, "name_not_allowed", 1, 0, string.Empty),
        }));
    }

    [Test]
    public void AFloodOfNewDestinationsKeepsEveryCountInAtMostOneReportOfRecords()
    {
        var tally = new DenialTally(new FakeTimeProvider(), DenialDetail.Destinations);
        for (int i = 0; i < 10_000; i++)
        {
            tally.DnsQuestion($"x{i}.attacker.example", "A", DecisionReason.NameNotAllowed);
            tally.Connection(new IPEndPoint(IPAddress.Parse("198.51.100.7"), 1 + i), (DecisionReason)(i % 13));
        }

        var (records, _) = tally.Take();

        Assert.Multiple(() =>
        {
            Assert.That(records, Has.Count.LessThan(DenialReportCodec.MaxRecords), "room for the report's policy record");
            Assert.That(records.Count(r => r.Subject.Length > 0), Is.EqualTo(DenialTally.MaxNamed));
            Assert.That(records.Sum(r => (long)r.Count), Is.EqualTo(20_000), "nothing counted is lost");
            Assert.That(records.Select(r => (r.Kind, r.Reason, r.Subject)).Distinct().Count(), Is.EqualTo(records.Count));
        });
    }

    [Test]
    public void AReportPutBackIsSentWithTheNextAndCoversBothPeriods()
    {
        var time = new FakeTimeProvider();
        var tally = new DenialTally(time, DenialDetail.Destinations);
        tally.Connection(Denied, DecisionReason.NeverLearned);
        time.Advance(TimeSpan.FromSeconds(10));
        var (failed, since) = tally.Take();
        tally.Connection(Denied, DecisionReason.NeverLearned);
        tally.PutBack(failed, since);
        time.Advance(TimeSpan.FromSeconds(10));

        var (records, _) = tally.Take();

        Assert.That(records, Is.EqualTo(new[] { new DenialRecord(DenialKind.Connection, "never_learned", 2, 20, "198.51.100.7:443") }));
    }

    [Test]
    public void ACountNeverWrapsAround()
    {
        var tally = new DenialTally(new FakeTimeProvider(), DenialDetail.Destinations);
        tally.PutBack([new DenialRecord(DenialKind.Connection, "never_learned", uint.MaxValue - 1, 1, "198.51.100.7:443")], 0);
        tally.Connection(Denied, DecisionReason.NeverLearned);
        tally.Connection(Denied, DecisionReason.NeverLearned);

        Assert.That(tally.Take().Records.Single().Count, Is.EqualTo(uint.MaxValue));
    }
}
