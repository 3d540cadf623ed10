using Egress.Configuration;
using System.Net;
using Egress.Diagnostics;
using Egress.Policy;
using Egress.Tests.Diagnostics;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Policy;

/// <summary>
/// <c>egress.mode = "report"</c>: what enforce denies is allowed with <see cref="PolicyDecision.WouldDeny"/> and its
/// reason, except disabled egress, internal ranges and the parent's own addresses; unlisted names are learned so that
/// the following connection is allowed and reported.
/// </summary>
public sealed class ReportModeTests
{
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(300);
    private FakeTimeProvider _time = null!;
    private AllowlistCache _cache = null!;

    [SetUp]
    public void SetUp()
    {
        _time = new FakeTimeProvider();
        _cache = new AllowlistCache(new AllowlistCacheOptions { TimeProvider = _time });
    }

    private EgressPolicy Policy(EgressMode mode, params string[] destinations) => EgressPolicy.Create(true, destinations, _cache, mode);

    [Test]
    public void AnUnlistedNameResolvesInReportModeAndIsDeniedInEnforceMode()
    {
        PolicyDecision report = Policy(EgressMode.Report, "api.example.com").CheckName("App.Unlisted.test.");
        PolicyDecision enforce = Policy(EgressMode.Enforce, "api.example.com").CheckName("app.unlisted.test");

        Assert.Multiple(() =>
        {
            Assert.That((report.IsAllowed, report.WouldDeny, report.Reason), Is.EqualTo((true, true, DecisionReason.NameNotAllowed)));
            Assert.That(report.ToString(), Is.EqualTo("allowed by report mode; enforce would deny: name not in allowlist"));
            Assert.That((enforce.IsAllowed, enforce.WouldDeny), Is.EqualTo((false, false)));
        });
    }

    [Test]
    public void AnAnswerForAnUnlistedNameIsLearnedAndItsConnectionIsReportedWithTheName()
    {
        EgressPolicy policy = Policy(EgressMode.Report, "api.example.com");
        var address = IPAddress.Parse("203.0.113.7");

        LearnResult learned = policy.Learn("app.unlisted.test", address, Ttl);
        PolicyDecision decision = policy.CheckConnection(address, 443, out AddressHold? hold);

        Assert.Multiple(() =>
        {
            Assert.That(learned.IsLearned, Is.True);
            Assert.That((decision.IsAllowed, decision.WouldDeny, decision.Reason, decision.Subject), Is.EqualTo((true, true, DecisionReason.NameNotAllowed, "app.unlisted.test")));
            Assert.That(decision.ToString(), Is.EqualTo("allowed by report mode; enforce would deny: name app.unlisted.test not in allowlist"));
            Assert.That(hold, Is.Null, "an address no allowed name gave is not held");
            Assert.That(policy.LearnedNameOf(address, decision), Is.EqualTo("app.unlisted.test"));
        });
    }

    [Test]
    public void EnforceModeStillRefusesToLearnAnUnlistedName()
    {
        EgressPolicy policy = Policy(EgressMode.Enforce, "api.example.com");

        LearnResult learned = policy.Learn("app.unlisted.test", IPAddress.Parse("203.0.113.7"), Ttl);

        Assert.That(learned.Outcome, Is.EqualTo(LearnOutcome.NameNotAllowed));
    }

    [Test]
    public void AnAddressLearnedFromAnAllowedNameIsAllowedWithoutAReport()
    {
        EgressPolicy policy = Policy(EgressMode.Report, "api.example.com:443");
        var address = IPAddress.Parse("203.0.113.8");
        policy.Learn("api.example.com", address, Ttl);

        PolicyDecision decision = policy.CheckConnection(address, 443, out AddressHold? hold);
        using (hold)
        {
            Assert.Multiple(() =>
            {
                Assert.That((decision.IsAllowed, decision.WouldDeny, decision.Reason), Is.EqualTo((true, false, DecisionReason.Learned)));
                Assert.That(hold, Is.Not.Null);
            });
        }
    }

    [TestCase("203.0.113.9", 443, DecisionReason.NeverLearned, TestName = "An address never learned")]
    [TestCase("198.51.100.1", 25, DecisionReason.PortNotAllowed, TestName = "A listed address on another port")]
    public void AConnectionEnforceWouldDenyIsAllowedAndReported(string address, int port, DecisionReason reason)
    {
        EgressPolicy report = Policy(EgressMode.Report, "api.example.com", "198.51.100.1:443");
        EgressPolicy enforce = EgressPolicy.Create(true, ["api.example.com", "198.51.100.1:443"], _cache, EgressMode.Enforce);

        PolicyDecision reported = report.CheckDestination(new IPEndPoint(IPAddress.Parse(address), port));
        PolicyDecision enforced = enforce.CheckDestination(new IPEndPoint(IPAddress.Parse(address), port));

        Assert.Multiple(() =>
        {
            Assert.That((reported.IsAllowed, reported.WouldDeny, reported.Reason), Is.EqualTo((true, true, reason)));
            Assert.That((enforced.IsAllowed, enforced.Reason), Is.EqualTo((false, reason)), "the reason is the one enforce gives");
        });
    }

    [TestCase("169.254.169.254", TestName = "Instance metadata")]
    [TestCase("127.0.0.1", TestName = "Loopback")]
    [TestCase("10.1.2.3", TestName = "A private range")]
    [TestCase("fd00:ec2::254", TestName = "IPv6 instance metadata (ULA)")]
    public void InternalAddressesStayDeniedInReportMode(string address)
    {
        EgressPolicy policy = Policy(EgressMode.Report, "*");

        PolicyDecision decision = policy.CheckConnection(IPAddress.Parse(address), 80, out AddressHold? hold);

        Assert.Multiple(() =>
        {
            Assert.That((decision.IsAllowed, decision.WouldDeny, decision.Reason), Is.EqualTo((false, false, DecisionReason.InternalRange)));
            Assert.That(decision.ToString(), Does.EndWith("; report mode does not relax internal addresses"));
            Assert.That(hold, Is.Null);
        });
    }

    [Test]
    public void AnInternalAnswerIsNotLearnedInReportMode()
    {
        EgressPolicy policy = Policy(EgressMode.Report, "api.example.com");

        LearnResult learned = policy.Learn("rebind.unlisted.test", IPAddress.Parse("169.254.169.254"), Ttl);
        PolicyDecision decision = policy.CheckAddress(IPAddress.Parse("169.254.169.254"));

        Assert.Multiple(() =>
        {
            Assert.That(learned.Outcome, Is.EqualTo(LearnOutcome.InternalRange));
            Assert.That(decision.IsAllowed, Is.False);
        });
    }

    [Test]
    public void TheParentsOwnAddressStaysDeniedInReportMode()
    {
        PolicyDecision decision = Policy(EgressMode.Report, "*").ParentAddressDenial("eth0");

        Assert.Multiple(() =>
        {
            Assert.That((decision.IsAllowed, decision.WouldDeny, decision.Reason), Is.EqualTo((false, false, DecisionReason.ParentAddress)));
            Assert.That(decision.ToString(), Is.EqualTo("denied: an address of the parent itself (interface eth0); an entry naming this one address allows it; report mode does not relax internal addresses"));
        });
    }

    [Test]
    public void DisabledEgressStaysDisabledInReportMode()
    {
        EgressPolicy policy = EgressPolicy.Create(false, ["*"], _cache, EgressMode.Report);

        PolicyDecision name = policy.CheckName("api.example.com");
        PolicyDecision connection = policy.CheckDestination(new IPEndPoint(IPAddress.Parse("203.0.113.7"), 443));

        Assert.Multiple(() =>
        {
            Assert.That((name.IsAllowed, name.Reason), Is.EqualTo((false, DecisionReason.EgressDisabled)));
            Assert.That((connection.IsAllowed, connection.Reason), Is.EqualTo((false, DecisionReason.EgressDisabled)));
            Assert.That(connection.ToString(), Is.EqualTo("denied: egress disabled"));
        });
    }

    [Test]
    public void EnforceDecisionsAreNeverMarked()
    {
        EgressPolicy policy = Policy(EgressMode.Enforce, "api.example.com");

        PolicyDecision internalRange = policy.CheckAddress(IPAddress.Parse("169.254.169.254"));

        Assert.Multiple(() =>
        {
            Assert.That(internalRange.ToString(), Does.Not.Contain("report mode"));
            Assert.That(policy.ParentAddressDenial("eth0").ToString(), Does.Not.Contain("report mode"));
        });
    }

    [Test]
    public void ReportModeChecksDoNotAllocate()
    {
        EgressPolicy policy = Policy(EgressMode.Report, "api.example.com:443", "198.51.100.1:443");
        policy.Learn("api.example.com", IPAddress.Parse("203.0.113.8"), Ttl);
        policy.Learn("app.unlisted.test", IPAddress.Parse("203.0.113.7"), Ttl);
        IPEndPoint[] destinations =
        [
            new(IPAddress.Parse("203.0.113.8"), 443), new(IPAddress.Parse("203.0.113.7"), 443), new(IPAddress.Parse("203.0.113.9"), 443),
            new(IPAddress.Parse("198.51.100.1"), 25), new(IPAddress.Parse("169.254.169.254"), 80),
        ];
        string[] names = ["api.example.com", "app.unlisted.test"];
        int rounds = 0;
        int wouldDeny = 0;

        long allocated = Allocations.LeastPerRound(() =>
        {
            rounds++;
            for (int i = 0; i < 50; i++)
            {
                foreach (IPEndPoint destination in destinations)
                {
                    wouldDeny += policy.CheckDestination(destination).WouldDeny ? 1 : 0;
                }

                foreach (string name in names)
                {
                    wouldDeny += policy.CheckName(name).WouldDeny ? 1 : 0;
                }
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(allocated, Is.Zero);
            Assert.That(wouldDeny, Is.EqualTo(rounds * 50 * 4), "unlisted name's address, never learned, port 25, unlisted name");
        });
    }

    [Test]
    public void AWouldDenyIsLoggedAndCountedWithItsReason()
    {
        using var probe = new TelemetryProbe(TunnelSide.Enclave);
        using var wouldDeny = new MetricCollector<long>(probe.Meters, EgressMetrics.MeterName, "egress.policy.would_deny");
        EgressPolicy policy = Policy(EgressMode.Report, "api.example.com");
        var address = IPAddress.Parse("203.0.113.7");
        policy.Learn("app.unlisted.test", address, Ttl);
        var destination = new IPEndPoint(address, 443);

        WouldDenyLog.Connection(probe.Logger, probe.Metrics, destination, null, policy, policy.CheckDestination(destination));
        WouldDenyLog.Question(probe.Logger, probe.Metrics, "app.unlisted.test.", "A", policy.CheckName("app.unlisted.test."), "answered NOERROR");
        WouldDenyLog.Question(probe.Logger, probe.Metrics, "api.example.com", "A", policy.CheckName("api.example.com"), "answered NOERROR");
        WouldDenyLog.Question(probe.Logger, probe.Metrics, string.Empty, "NS", policy.CheckName(string.Empty), "answered NXDOMAIN"); // a review: "would deny DNS  NS"

        var measurements = wouldDeny.GetMeasurementSnapshot();
        Assert.Multiple(() =>
        {
            Assert.That(probe.Logs.Lines, Is.EqualTo(new[]
            {
                "Warning: report mode: would deny connection to 203.0.113.7:443 (name app.unlisted.test): name app.unlisted.test not in allowlist; allowed",
                "Warning: report mode: would deny DNS app.unlisted.test A: name not in allowlist; answered NOERROR",
                "Warning: report mode: would deny DNS . NS: name not in allowlist; answered NXDOMAIN",
            }));
            Assert.That(measurements.Select(m => ((string?)m.Tags["egress.kind"], (string?)m.Tags["egress.reason"])), Is.EqualTo(new[]
            {
                ("connection", "name_not_allowed"),
                ("dns", "name_not_allowed"),
                ("dns", "name_not_allowed"),
            }));
        });
    }

    /// <summary>
    /// Two names share an address; the line names the name its reason names, and report-to-allowlist proposes that name
    /// with the port. A trial: <c>hello.egress.test</c> (listed on :80, learned first, expired since) and
    /// <c>tls.allowed.test</c> (unlisted, learned last) gave <c>(name hello.egress.test): name tls.allowed.test not in
    /// allowlist</c>, and the proposal <c>hello.egress.test:443</c> instead of <c>tls.allowed.test:443</c>.
    /// </summary>
    [Test]
    public void AConnectionToAnAddressTwoNamesShareIsReportedUnderTheNameItsReasonNames()
    {
        EgressPolicy policy = Policy(EgressMode.Report, "hello.egress.test:80");
        var address = IPAddress.Parse("198.18.0.11");
        policy.Learn("hello.egress.test", address, TimeSpan.FromSeconds(30));
        _time.Advance(TimeSpan.FromSeconds(30) + new AllowlistCacheOptions().Grace + TimeSpan.FromSeconds(1));
        policy.Learn("tls.allowed.test", address, Ttl);

        (PolicyDecision decision, string line, IReadOnlyList<string> proposed) = ReportConnection(policy, new IPEndPoint(address, 443));

        Assert.Multiple(() =>
        {
            Assert.That((decision.Reason, decision.Subject), Is.EqualTo((DecisionReason.NameNotAllowed, "tls.allowed.test")));
            Assert.That(line, Is.EqualTo("Warning: report mode: would deny connection to 198.18.0.11:443 (name tls.allowed.test): name tls.allowed.test not in allowlist; allowed"));
            Assert.That(proposed, Is.EqualTo(new[] { "tls.allowed.test:443" }));
        });
    }

    /// <summary>A port a listed name's entry does not allow, on an address an unlisted name was learned from first: the
    /// line names the listed name whose entry its reason quotes, not the name learned first.</summary>
    [Test]
    public void APortNotAllowedIsReportedUnderTheNameWhoseEntryItQuotes()
    {
        EgressPolicy policy = Policy(EgressMode.Report, "*.egress.test:80");
        var address = IPAddress.Parse("198.18.0.11");
        policy.Learn("first.unlisted.test", address, Ttl);
        policy.Learn("hello.egress.test", address, Ttl);

        (PolicyDecision decision, string line, IReadOnlyList<string> proposed) = ReportConnection(policy, new IPEndPoint(address, 8080));

        Assert.Multiple(() =>
        {
            Assert.That((decision.Reason, decision.Subject), Is.EqualTo((DecisionReason.PortNotAllowed, "*.egress.test:80")));
            Assert.That(line, Is.EqualTo("Warning: report mode: would deny connection to 198.18.0.11:8080 (name hello.egress.test): port not allowed by \"*.egress.test:80\"; allowed"));
            Assert.That(proposed, Is.EqualTo(new[] { "hello.egress.test:8080" }));
        });
    }

    /// <summary>A trial: www.allowed.test (listed on :80) learned first, then secure.allowed.test (unlisted) resolved by
    /// the app, which connects to port 443: the line blamed www's entry and report-to-allowlist proposed
    /// www.allowed.test:443, an entry the app never used. The name learned last is the likeliest the app resolved.</summary>
    [Test]
    public void ADenialBlamesTheNameLearnedLastNotAListedNameLearnedBefore()
    {
        EgressPolicy policy = Policy(EgressMode.Report, "www.allowed.test:80");
        var address = IPAddress.Parse("198.18.0.20");
        policy.Learn("www.allowed.test", address, Ttl);
        _time.Advance(TimeSpan.FromSeconds(5));
        policy.Learn("secure.allowed.test", address, Ttl);

        (PolicyDecision decision, string line, IReadOnlyList<string> proposed) = ReportConnection(policy, new IPEndPoint(address, 443));

        Assert.Multiple(() =>
        {
            Assert.That((decision.Reason, decision.Subject), Is.EqualTo((DecisionReason.NameNotAllowed, "secure.allowed.test")));
            Assert.That(line, Is.EqualTo("Warning: report mode: would deny connection to 198.18.0.20:443 (name secure.allowed.test): name secure.allowed.test not in allowlist; allowed"));
            Assert.That(proposed, Is.EqualTo(new[] { "secure.allowed.test:443" }));
        });
    }

    /// <summary>Two listed names share an address and a wildcard entry; of the names that entry allows, the line names
    /// the one learned last (the trial's enforce-mode lines named the first: "learned from mixed.allowed.test" for an app
    /// that had just resolved another name).</summary>
    [Test]
    public void OfTwoListedNamesTheOneLearnedLastIsNamed()
    {
        EgressPolicy policy = Policy(EgressMode.Report, "*.egress.test:80");
        var address = IPAddress.Parse("198.18.0.11");
        policy.Learn("first.egress.test", address, Ttl);
        _time.Advance(TimeSpan.FromSeconds(5));
        policy.Learn("second.egress.test", address, Ttl);

        (PolicyDecision denied, string line, IReadOnlyList<string> proposed) = ReportConnection(policy, new IPEndPoint(address, 8080));
        PolicyDecision allowed = policy.CheckConnection(address, 80, out AddressHold? hold);
        hold?.Dispose();

        Assert.Multiple(() =>
        {
            Assert.That(line, Does.Contain("(name second.egress.test): port not allowed by \"*.egress.test:80\""));
            Assert.That(proposed, Is.EqualTo(new[] { "second.egress.test:8080" }));
            Assert.That((allowed.IsAllowed, allowed.Subject), Is.EqualTo((true, "second.egress.test")));
            Assert.That(denied.Reason, Is.EqualTo(DecisionReason.PortNotAllowed));
        });
    }

    /// <summary>The name learned last is the one resolved last, not the one expiring last: a name with a day's TTL
    /// learned before, then the app resolves another name of the address (an integration run: the line named the
    /// day-long name, which the app had not resolved); and a name resolved again becomes the one learned last.</summary>
    [Test]
    public void TheNameResolvedLastIsNamedWhateverItsTtl()
    {
        var cache = new AllowlistCache(new AllowlistCacheOptions { TimeProvider = _time });
        EgressPolicy policy = EgressPolicy.Create(true, ["www.allowed.test", "long.allowed.test"], cache);
        var address = IPAddress.Parse("198.18.0.10");
        policy.Learn("long.allowed.test", address, TimeSpan.FromDays(1));
        policy.Learn("www.allowed.test", address, TimeSpan.FromMinutes(5));

        PolicyDecision afterWww = policy.CheckConnection(address, 80, out AddressHold? hold);
        hold?.Dispose();
        policy.Learn("long.allowed.test", address, TimeSpan.FromDays(1));
        PolicyDecision afterLong = policy.CheckConnection(address, 80, out hold);
        hold?.Dispose();

        Assert.Multiple(() =>
        {
            Assert.That(afterWww.ToString(), Is.EqualTo("allowed: learned from www.allowed.test, expires in 5m0s"));
            Assert.That(afterLong.Subject, Is.EqualTo("long.allowed.test"), "resolved again: learned last");
        });
    }

    /// <summary>A connection's decision, the would-deny line logged for it, and what report-to-allowlist proposes from it.</summary>
    private static (PolicyDecision Decision, string Line, IReadOnlyList<string> Proposed) ReportConnection(EgressPolicy policy, IPEndPoint destination)
    {
        using var probe = new TelemetryProbe(TunnelSide.Enclave);
        PolicyDecision decision = policy.CheckConnection(destination.Address, destination.Port, out AddressHold? hold);
        hold?.Dispose();
        WouldDenyLog.Connection(probe.Logger, probe.Metrics, destination, name: null, policy, decision);
        var reported = new ReportedDestinations();
        foreach (string line in probe.Logs.Lines)
        {
            reported.Add(line);
        }

        return (decision, probe.Logs.Lines.Single(), reported.Entries());
    }
}
