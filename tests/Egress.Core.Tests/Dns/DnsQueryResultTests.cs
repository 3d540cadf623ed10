using Egress.Dns;
using Egress.Dns.Wire;

namespace Egress.Tests.Dns;

/// <summary>The one place a DNS query's outcome becomes an answer (RCODE), a metric tag and a log action.</summary>
public sealed class DnsQueryResultTests
{
    [TestCase((int)DnsQueryOutcome.DeniedName, 3, "denied", "answered NXDOMAIN")]
    [TestCase((int)DnsQueryOutcome.UpstreamFailed, 2, "servfail", "answered SERVFAIL")]
    [TestCase((int)DnsQueryOutcome.FormErr, 1, "formerr", "answered FORMERR")]
    [TestCase((int)DnsQueryOutcome.NotImp, 4, "notimp", "answered NOTIMP")]
    [TestCase((int)DnsQueryOutcome.BadVers, 0, "badvers", "answered BADVERS")]
    public void LocalAnswerHasTheOutcomesRcodeAndTag(int outcomeValue, int rcode, string tag, string action)
    {
        var outcome = (DnsQueryOutcome)outcomeValue;
        byte[] query = DnsMessageBuilder.Query().Question("a.test").ToArray();
        byte[] response = new byte[DnsMessage.MaxErrorResponseLength];

        var result = DnsQueryResult.Answer(outcome, query, response, default, "why");

        Assert.That(result.Outcome, Is.EqualTo(outcome));
        Assert.That(result.Length, Is.GreaterThan(DnsHeader.Length));
        Assert.That(DnsHeader.TryRead(response.AsSpan(0, result.Length), out DnsHeader header), Is.True);
        Assert.That(header.ResponseCode, Is.EqualTo(rcode));
        Assert.That((result.MetricTag, result.Action, result.Reason), Is.EqualTo((tag, action, "why")));
    }

    [Test]
    public void AnswerThatCannotBeWrittenIsDropped()
    {
        var result = DnsQueryResult.Answer(DnsQueryOutcome.FormErr, new byte[5], new byte[DnsMessage.MaxErrorResponseLength], default, "short");

        Assert.That((result.Outcome, result.Length, result.MetricTag, result.Action), Is.EqualTo((DnsQueryOutcome.Dropped, -1, "dropped", "dropped")));
    }

    [TestCase((int)DnsQueryOutcome.Forwarded, "forwarded")]
    [TestCase((int)DnsQueryOutcome.Truncated, "truncated")]
    public void ForwardedOutcomesHaveTheirTag(int outcome, string tag) =>
        Assert.That(DnsQueryResult.MetricTagOf((DnsQueryOutcome)outcome), Is.EqualTo(tag));

    [Test]
    public void EveryOutcomeHasItsOwnLowerCaseTag()
    {
        var tags = Enum.GetValues<DnsQueryOutcome>().Select(DnsQueryResult.MetricTagOf).ToList();

        Assert.That(tags, Is.Unique);
        Assert.That(tags, Is.All.Match("^[a-z]+$"));
    }

    [Test]
    public void ForwardingIsNotAnsweredLocally() =>
        Assert.That(() => DnsQueryResult.Answer(DnsQueryOutcome.Forwarded, [], new byte[DnsMessage.MaxErrorResponseLength], default, ""), Throws.InstanceOf<ArgumentOutOfRangeException>());
}
