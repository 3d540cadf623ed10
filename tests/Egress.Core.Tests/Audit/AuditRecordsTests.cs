using System.Net;
using Egress.Audit;
using Egress.Gateway;
using Egress.Interception;
using Egress.Policy;
using Egress.Proxy;
using Egress.Tunnel;

namespace Egress.Tests.Audit;

/// <summary>Which outcomes get an audit record on each host, and what a failure's record says.</summary>
public sealed class AuditRecordsTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 30, 11, 0, 0, TimeSpan.Zero);
    private static readonly IPEndPoint Destination = new(IPAddress.Parse("198.51.100.7"), 443);

    [Test]
    public void TheEnclaveRecordsEveryDecidedConnectionButNotOneThatWasNeverRedirected()
    {
        var notRedirected = ProxyConnectionResult.NotRedirected(OriginalDestinationStatus.NotRedirected, "direct connection");
        var learned = new PolicyDecision(true, DecisionReason.Learned, "api.example.com", TimeSpan.FromSeconds(30));
        var refused = ProxyConnectionResult.ParentRefused(Destination, TunnelStatus.DeniedByPolicy, "parent: denied: never learned from an allowed name")
            .WithConnectionId(0x1122334455667788)
            .WithAllowingDecision(learned);

        AuditRecord? record = AuditRecords.ForEnclave(refused, Now);
        Assert.Multiple(() =>
        {
            Assert.That(AuditRecords.ForEnclave(notRedirected, Now), Is.Null);
            Assert.That(record, Is.Not.Null);
            Assert.That(record!.Value.ConnectionId, Is.EqualTo(0x1122334455667788UL));
            Assert.That((record.Value.Decision, record.Value.Reason, record.Value.Name), Is.EqualTo(("allowed", "learned", "api.example.com")), "the enclave allowed it");
            Assert.That(record.Value.Outcome, Is.EqualTo("denied"), "the parent denied it");
            Assert.That(record.Value.Detail, Is.EqualTo("parent: DeniedByPolicy: parent: denied: never learned from an allowed name"));
            Assert.That(record.Value.CloseCause, Is.Null, "nothing was relayed");
        });
    }

    /// <summary>A red-team trial: a request to a static entry's address with the host hint api.example.com was recorded
    /// with that name, which the parent never checked. The name is the parent's own learned name; the hint is apart.</summary>
    [Test]
    public void TheParentsNameIsTheOneItLearnedAndTheEnclavesHintIsRecordedApart()
    {
        var request = TunnelRequest.ForTcp(Destination, "api.example.com").AsVersion2(42);
        var byStaticEntry = GatewayStreamResult.ConnectFailed(
            request, request.Destination!, new PolicyDecision(true, DecisionReason.StaticEntry, "198.51.100.20"), TunnelStatus.ConnectionRefused, "Connection refused");
        var byLearnedName = GatewayStreamResult.ConnectFailed(
            request, request.Destination!, new PolicyDecision(true, DecisionReason.Learned, "www.example.com", TimeSpan.FromSeconds(5)), TunnelStatus.ConnectionRefused, "Connection refused");

        AuditRecord? staticRecord = AuditRecords.ForParent(byStaticEntry, cid: null, Now);
        AuditRecord? learnedRecord = AuditRecords.ForParent(byLearnedName, cid: null, Now);

        Assert.That((staticRecord?.Name, staticRecord?.HostHint), Is.EqualTo(((string?)null, "api.example.com")));
        Assert.That((learnedRecord?.Name, learnedRecord?.HostHint), Is.EqualTo(("www.example.com", "api.example.com")));
    }

    [Test]
    public void TheParentRecordsTcpDecisionsButNotDnsStreamsOrBadRequests()
    {
        var request = TunnelRequest.ForTcp(Destination, "api.example.com").AsVersion2(42);
        var denied = GatewayStreamResult.Denied(request, request.Destination!, new PolicyDecision(false, DecisionReason.NeverLearned));
        var failed = GatewayStreamResult.ConnectFailed(
            request, request.Destination!, new PolicyDecision(true, DecisionReason.Learned, "api.example.com", TimeSpan.FromSeconds(5)), TunnelStatus.ConnectionRefused, "Connection refused");

        AuditRecord? deniedRecord = AuditRecords.ForParent(denied, cid: 16, Now);
        AuditRecord? failedRecord = AuditRecords.ForParent(failed, cid: null, Now);
        Assert.Multiple(() =>
        {
            Assert.That(AuditRecords.ForParent(GatewayStreamResult.DnsServed(TunnelRequest.ForDns(), default), null, Now), Is.Null);
            Assert.That(AuditRecords.ForParent(GatewayStreamResult.HeaderTimedOut, null, Now), Is.Null);
            Assert.That((deniedRecord?.Decision, deniedRecord?.Outcome, deniedRecord?.Cid, deniedRecord?.ConnectionId), Is.EqualTo(("denied", "denied", (uint?)16, (ulong?)42)));
            Assert.That((failedRecord?.Decision, failedRecord?.Outcome, failedRecord?.Detail), Is.EqualTo(("allowed", "failed", "ConnectionRefused: Connection refused")));
        });
    }
}
