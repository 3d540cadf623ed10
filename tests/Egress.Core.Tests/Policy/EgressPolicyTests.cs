using System.Net;
using Egress.Policy;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Policy;

public sealed class EgressPolicyTests
{
    private FakeTimeProvider _time = null!;
    private AllowlistCache _cache = null!;

    [SetUp]
    public void SetUp()
    {
        _time = new FakeTimeProvider();
        _cache = new AllowlistCache(new AllowlistCacheOptions { TimeProvider = _time });
    }

    /// <summary>From a red-team trial: a name that expired 10 minutes before still lent its entry's ports (and its
    /// server name) to the address because another name had just been learned for it.</summary>
    /// <summary>A security review: an address or network entry with ports denied every other port of its addresses,
    /// though "*" or a name learned for the address allowed it ("the same address under several entries allows the
    /// union of their ports").</summary>
    [Test]
    public void AnAddressEntryWithPortsDoesNotOverrideAllowAllOrALearnedNameOnOtherPorts()
    {
        var address = IPAddress.Parse("203.0.113.9");
        EgressPolicy withAllowAll = Policy("*:443", "203.0.113.0/24:8000-8100");
        EgressPolicy withName = Policy("api.example.com", "203.0.113.0/24:22");
        withName.Learn("api.example.com", address, TimeSpan.FromMinutes(5));
        EgressPolicy internalNetwork = Policy("*:443", "10.0.0.0/8:22");

        Assert.Multiple(() =>
        {
            Assert.That(withAllowAll.CheckDestination(new IPEndPoint(address, 443)).Reason, Is.EqualTo(DecisionReason.AllowAll));
            Assert.That(withAllowAll.CheckDestination(new IPEndPoint(address, 8050)).Reason, Is.EqualTo(DecisionReason.StaticEntry));
            Assert.That(withAllowAll.CheckDestination(new IPEndPoint(address, 25)).Reason, Is.EqualTo(DecisionReason.PortNotAllowed));
            Assert.That(withName.CheckDestination(new IPEndPoint(address, 443)).Reason, Is.EqualTo(DecisionReason.Learned));
            Assert.That(withName.CheckDestination(new IPEndPoint(IPAddress.Parse("203.0.113.10"), 443)).Reason, Is.EqualTo(DecisionReason.PortNotAllowed),
                "not learned: the entry that covers it names the ports");
            Assert.That(internalNetwork.CheckDestination(new IPEndPoint(IPAddress.Parse("10.1.2.3"), 443)).Reason, Is.EqualTo(DecisionReason.PortNotAllowed),
                "an internal address: never by *; the entry that names it is the one to fix");
        });
    }

    [Test]
    public void AnExpiredNameNoLongerLendsItsPortsOrServerNameWhileAnotherKeepsTheAddressLive()
    {
        EgressPolicy policy = Policy("smtp.example.com:25", "web.example.com:443", "www.allowed.test:443", "cdn.allowed.test:443");
        var address = IPAddress.Parse("198.18.7.7");
        policy.Learn("smtp.example.com", address, TimeSpan.FromSeconds(30));
        policy.Learn("www.allowed.test", address, TimeSpan.FromSeconds(30));
        PolicyDecision before = policy.CheckDestination(new IPEndPoint(address, 25));
        _time.Advance(TimeSpan.FromMinutes(11));
        policy.Learn("web.example.com", address, TimeSpan.FromMinutes(5));
        policy.Learn("cdn.allowed.test", address, TimeSpan.FromMinutes(5));

        Assert.Multiple(() =>
        {
            Assert.That(before.IsAllowed, Is.True, "while smtp.example.com was live");
            Assert.That(policy.CheckDestination(new IPEndPoint(address, 25)).Reason, Is.EqualTo(DecisionReason.PortNotAllowed));
            Assert.That(policy.CheckDestination(new IPEndPoint(address, 443)).IsAllowed, Is.True);
            Assert.That(policy.LearnedNamesOf(address, null), Is.EquivalentTo(new[] { "web.example.com", "cdn.allowed.test" }));
        });
    }

    /// <summary>From a review: when the last connection closed, only the address's latest name started its grace, so the
    /// name the connection had gone through (and its port and server name) was lost in the grace the docs promise.</summary>
    [Test]
    public void TheGraceAfterTheLastConnectionClosesKeepsItsNamesPort()
    {
        EgressPolicy policy = Policy("a.example.com:443", "b.example.com:25");
        var address = IPAddress.Parse("198.18.7.9");
        policy.Learn("a.example.com", address, TimeSpan.FromSeconds(30));
        policy.Learn("b.example.com", address, TimeSpan.FromSeconds(100));
        Assert.That(policy.CheckConnection(address, 443, out AddressHold? hold).IsAllowed, Is.True);
        _time.Advance(TimeSpan.FromMinutes(10));
        hold!.Dispose();
        _time.Advance(TimeSpan.FromSeconds(5));

        Assert.Multiple(() =>
        {
            Assert.That(policy.CheckDestination(new IPEndPoint(address, 443)).Reason, Is.EqualTo(DecisionReason.LearnedInGrace));
            Assert.That(policy.LearnedNamesOf(address, null), Does.Contain("a.example.com"));
        });
    }

    /// <summary>From a review: a decision through a learned address named the address's latest name, not the one whose
    /// entry allowed the port; that name is the host hint a restarted parent re-learns (and denied on the port) and the
    /// name a failover looks for other addresses of.</summary>
    [Test]
    public void ADecisionNamesTheNameWhoseEntryAllowedThePort()
    {
        EgressPolicy policy = Policy("a.example.com:443", "b.example.com:25");
        var address = IPAddress.Parse("198.18.7.12");
        policy.Learn("a.example.com", address, TimeSpan.FromSeconds(100));
        policy.Learn("b.example.com", address, TimeSpan.FromSeconds(300));

        PolicyDecision web = policy.CheckConnection(address, 443, out AddressHold? hold);
        hold?.Dispose();
        Assert.Multiple(() =>
        {
            Assert.That((web.IsAllowed, web.Subject), Is.EqualTo((true, "a.example.com")));
            Assert.That(policy.CheckDestination(new IPEndPoint(address, 25)).Subject, Is.EqualTo("b.example.com"));
        });
    }

    /// <summary>A decision through a name that is not the address's latest told the latest's expiry ("expires in 5m0s"
    /// for a name whose own TTL ends in 100 s), and said "in use" or "in grace" by the address, not by that name.</summary>
    [Test]
    public void ADecisionThroughANameTellsThatNamesOwnExpiry()
    {
        EgressPolicy policy = Policy("a.example.com:443", "b.example.com:25");
        var address = IPAddress.Parse("198.18.7.15");
        policy.Learn("a.example.com", address, TimeSpan.FromSeconds(100));
        policy.Learn("b.example.com", address, TimeSpan.FromSeconds(300));
        PolicyDecision live = policy.CheckDestination(new IPEndPoint(address, 443));
        _time.Advance(TimeSpan.FromSeconds(130));
        PolicyDecision inGrace = policy.CheckConnection(address, 443, out AddressHold? hold);
        _time.Advance(TimeSpan.FromSeconds(60));
        PolicyDecision inUse = policy.CheckDestination(new IPEndPoint(address, 443));
        hold?.Dispose();

        Assert.Multiple(() =>
        {
            Assert.That((live.Reason, live.Subject, live.Time), Is.EqualTo((DecisionReason.Learned, "a.example.com", TimeSpan.FromSeconds(100))));
            Assert.That((inGrace.Reason, inGrace.Time), Is.EqualTo((DecisionReason.LearnedInGrace, TimeSpan.FromSeconds(30))));
            Assert.That((inUse.Reason, inUse.Connections), Is.EqualTo((DecisionReason.LearnedInUse, 1)));
        });
    }

    /// <summary>From a review: a live name the policy does not list (report mode learns them) made every expired name
    /// count again, so report mode said nothing of a connection enforce would deny.</summary>
    [Test]
    public void ALiveUnlistedNameDoesNotReviveAnExpiredNamesPorts()
    {
        var policy = EgressPolicy.Create(true, ["smtp.example.com:25", "web.example.com:443"], _cache, EgressMode.Report);
        var address = IPAddress.Parse("198.18.7.10");
        policy.Learn("smtp.example.com", address, TimeSpan.FromSeconds(30));
        _time.Advance(TimeSpan.FromMinutes(11));
        policy.Learn("unlisted.test", address, TimeSpan.FromMinutes(5));

        PolicyDecision decision = policy.CheckDestination(new IPEndPoint(address, 25));
        Assert.That((decision.IsAllowed, decision.WouldDeny), Is.EqualTo((true, true)), decision.ToString);
    }

    /// <summary>From a review: a connection denied on its port took a hold and released it, which restarted the
    /// address's grace: a denied attempt every 50 s kept an address learned with a 30 s TTL allowed indefinitely.</summary>
    [Test]
    public void AConnectionDeniedOnItsPortDoesNotKeepTheAddressLive()
    {
        EgressPolicy policy = Policy("a.example.com:443");
        var address = IPAddress.Parse("198.18.7.11");
        policy.Learn("a.example.com", address, TimeSpan.FromSeconds(30));
        for (int attempt = 0; attempt < 12; attempt++)
        {
            _time.Advance(TimeSpan.FromSeconds(50));
            Assert.That(policy.CheckConnection(address, 25, out AddressHold? hold).IsAllowed, Is.False);
            Assert.That(hold, Is.Null);
        }

        Assert.That(policy.CheckDestination(new IPEndPoint(address, 443)).IsAllowed, Is.False, "10 minutes after a 30 s TTL");
    }

    /// <summary>A hold records the name its connection went through: an address kept live only by an open connection
    /// (every name's TTL and grace over) lends that name's ports and server name, not its other names' (before, every
    /// name counted while any connection held the address: <c>smtp.example.com:25</c>, expired an hour before, was
    /// allowed because a connection to <c>web.example.com:443</c> was open; docs/threat-model.md listed the gap).</summary>
    [Test]
    public void AnAddressLiveOnlyThroughAConnectionLendsOnlyTheNameItWentThrough()
    {
        EgressPolicy policy = Policy("smtp.example.com:25", "web.example.com:443");
        var address = IPAddress.Parse("198.18.7.8");
        policy.Learn("smtp.example.com", address, TimeSpan.FromSeconds(30));
        policy.Learn("web.example.com", address, TimeSpan.FromSeconds(30));
        PolicyDecision held = policy.CheckConnection(address, 443, out AddressHold? hold);
        _time.Advance(TimeSpan.FromHours(1));

        using (hold)
        {
            Assert.Multiple(() =>
            {
                Assert.That((held.IsAllowed, hold?.Name), Is.EqualTo((true, "web.example.com")));
                Assert.That(policy.CheckDestination(new IPEndPoint(address, 443)).Reason, Is.EqualTo(DecisionReason.LearnedInUse));
                Assert.That(policy.CheckDestination(new IPEndPoint(address, 25)).Reason, Is.EqualTo(DecisionReason.PortNotAllowed));
                Assert.That(policy.LearnedNamesOf(address, null), Is.EqualTo(new[] { "web.example.com" }));
            });
        }
    }

    /// <summary>Connections through two names of one address: each name counts while its own connection is open, and
    /// the grace after a name's last connection closes is that name's alone.</summary>
    [Test]
    public void EachNameCountsWhileItsOwnConnectionsAreOpenAndForItsOwnGrace()
    {
        EgressPolicy policy = Policy("smtp.example.com:25", "web.example.com:443");
        var address = IPAddress.Parse("198.18.7.13");
        policy.Learn("smtp.example.com", address, TimeSpan.FromSeconds(30));
        policy.Learn("web.example.com", address, TimeSpan.FromSeconds(30));
        Assert.That(policy.CheckConnection(address, 25, out AddressHold? mail).IsAllowed, Is.True);
        Assert.That(policy.CheckConnection(address, 443, out AddressHold? web).IsAllowed, Is.True);
        _time.Advance(TimeSpan.FromHours(1));
        PolicyDecision bothOpen = policy.CheckDestination(new IPEndPoint(address, 25));

        mail!.Dispose();
        _time.Advance(TimeSpan.FromSeconds(30)); // inside smtp.example.com's grace (60 s)
        PolicyDecision inMailGrace = policy.CheckDestination(new IPEndPoint(address, 25));
        _time.Advance(TimeSpan.FromSeconds(31)); // past it; web.example.com is still held
        PolicyDecision afterMailGrace = policy.CheckDestination(new IPEndPoint(address, 25));
        PolicyDecision webStill = policy.CheckDestination(new IPEndPoint(address, 443));
        web!.Dispose();

        Assert.Multiple(() =>
        {
            Assert.That(bothOpen.IsAllowed, Is.True, bothOpen.ToString);
            Assert.That(inMailGrace.IsAllowed, Is.True, inMailGrace.ToString);
            Assert.That(afterMailGrace.Reason, Is.EqualTo(DecisionReason.PortNotAllowed), afterMailGrace.ToString);
            Assert.That(webStill.Reason, Is.EqualTo(DecisionReason.LearnedInUse), webStill.ToString);
        });
    }

    /// <summary>A held name counts beside a live one: learning another name for an address in use must not take the
    /// open connection's name away (its entry's port) because a live name now exists, nor forget it as too old.</summary>
    [Test]
    public void AHeldNameStillCountsAfterAnotherNameIsLearnedForItsAddress()
    {
        EgressPolicy policy = Policy("smtp.example.com:25", "web.example.com:443");
        var address = IPAddress.Parse("198.18.7.14");
        policy.Learn("smtp.example.com", address, TimeSpan.FromSeconds(30));
        Assert.That(policy.CheckConnection(address, 25, out AddressHold? hold).IsAllowed, Is.True);
        _time.Advance(TimeSpan.FromDays(1)); // far past the TTL, grace and retention
        policy.Learn("web.example.com", address, TimeSpan.FromMinutes(5));

        using (hold)
        {
            Assert.Multiple(() =>
            {
                Assert.That(policy.CheckDestination(new IPEndPoint(address, 25)).IsAllowed, Is.True);
                Assert.That(policy.CheckDestination(new IPEndPoint(address, 443)).IsAllowed, Is.True);
                Assert.That(policy.LearnedNamesOf(address, null), Is.EquivalentTo(new[] { "smtp.example.com", "web.example.com" }));
            });
        }
    }

    /// <summary>From a library-consumer trial: <c>default(LearnResult)</c> (a result nobody filled in) said
    /// "learned", because <see cref="LearnOutcome.Learned"/> was 0; a default <see cref="PolicyDecision"/> says denied.</summary>
    [Test]
    public void DefaultResultsFailClosed()
    {
        Assert.Multiple(() =>
        {
            Assert.That(default(LearnResult).IsLearned, Is.False);
            Assert.That(default(LearnResult).Outcome, Is.EqualTo(LearnOutcome.EgressDisabled));
            Assert.That(default(LearnResult).ToString(), Is.EqualTo("not learned: egress disabled"));
            Assert.That(default(PolicyDecision).IsAllowed, Is.False);
        });
    }

    /// <summary>From a library-consumer trial: the overload with a TLS server-name mode always enforced, so report
    /// mode with a server-name mode was out of reach; values outside the enums were kept.</summary>
    [Test]
    public void CreateTakesATlsServerNameModeAndAModeAndRefusesUndefinedOnes()
    {
        EgressPolicy policy = EgressPolicy.Create(true, ["api.example.com"], _cache, Egress.Tls.TlsServerNameMode.Off, EgressMode.Report);

        Assert.Multiple(() =>
        {
            Assert.That((policy.TlsServerName, policy.Mode), Is.EqualTo((Egress.Tls.TlsServerNameMode.Off, EgressMode.Report)));
            Assert.That(EgressPolicy.Create(true, ["api.example.com"], _cache, Egress.Tls.TlsServerNameMode.Off).Mode, Is.EqualTo(EgressMode.Enforce));
            Assert.That(() => EgressPolicy.Create(true, [], _cache, (EgressMode)7), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("mode"));
            Assert.That(() => EgressPolicy.Create(true, [], _cache, (Egress.Tls.TlsServerNameMode)9), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("tlsServerName"));
        });
    }

    [Test]
    public void CreateParsesEntriesInOrder()
    {
        EgressPolicy policy = Policy("API.example.com.", "*.Example.org", "198.18.0.0/15", "[2001:db8::1]", "*");

        Assert.Multiple(() =>
        {
            Assert.That(policy.IsEnabled, Is.True);
            Assert.That(policy.Destinations.Select(rule => rule.Text), Is.EqualTo(new[] { "api.example.com", "*.example.org", "198.18.0.0/15", "2001:db8::1", "*" }));
        });
    }

    [Test]
    public void CreateCollectsEveryInvalidEntry()
    {
        var exception = Assert.Throws<ArgumentException>(() => Policy("ok.example.com", "api.example.com:0", "a.*.com", "10.0.0.1/8"));

        string[] expected =
        [
            "invalid destination \"api.example.com:0\": port \"0\" is not a number from 1 to 65535",
            "invalid destination \"a.*.com\": '*' may only stand alone (\"*\") or be the whole leftmost label (\"*.example.com\")",
            "invalid destination \"10.0.0.1/8\": has host bits set after /8 (did you mean \"10.0.0.0/8\"?)",
        ];
        Assert.Multiple(() =>
        {
            Assert.That(exception!.ParamName, Is.EqualTo("destinations"));
            Assert.That(exception.Message, Is.EqualTo(string.Join(Environment.NewLine, expected) + " (Parameter 'destinations')"));
        });
    }

    [Test]
    public void CreateAcceptsDuplicates()
    {
        EgressPolicy policy = Policy("api.example.com", "API.example.com", "10.0.0.5", "10.0.0.5");

        Assert.Multiple(() =>
        {
            Assert.That(policy.Destinations, Has.Count.EqualTo(4));
            Assert.That(policy.CheckName("api.example.com").ToString(), Is.EqualTo("allowed: name matches \"api.example.com\""));
        });
    }

    // ---- CheckName ----

    [TestCase("api.example.com", "allowed: name matches \"api.example.com\"")]
    [TestCase("API.EXAMPLE.COM", "allowed: name matches \"api.example.com\"")]
    [TestCase("api.example.com.", "allowed: name matches \"api.example.com\"")]
    [TestCase("www.example.com", "denied: name not in allowlist")]
    [TestCase("example.com", "denied: name not in allowlist")]
    [TestCase("api.example.com.evil.net", "denied: name not in allowlist")]
    [TestCase("xapi.example.com", "denied: name not in allowlist")]
    [TestCase("a.api.example.com", "denied: name not in allowlist")]
    [TestCase("", "denied: name not in allowlist")]
    [TestCase(".", "denied: name not in allowlist")]
    public void CheckNameExactHost(string name, string decision) =>
        Assert.That(Policy("api.example.com").CheckName(name).ToString(), Is.EqualTo(decision));

    [TestCase("a.example.com", true)]
    [TestCase("A.Example.Com.", true)]
    [TestCase("a.b.c.d.example.com", true)]
    [TestCase("_acme.example.com", true)]
    [TestCase("example.com", false)]
    [TestCase("example.com.", false)]
    [TestCase("badexample.com", false)]
    [TestCase("a.badexample.com", false)]
    [TestCase("example.com.evil.net", false)]
    [TestCase("a.example.co", false)]
    [TestCase("com", false)]
    [TestCase(".example.com", false)]
    public void CheckNameWildcardMatchesAnyDepthButNotTheApex(string name, bool allowed)
    {
        PolicyDecision decision = Policy("*.example.com").CheckName(name);

        Assert.Multiple(() =>
        {
            Assert.That(decision.IsAllowed, Is.EqualTo(allowed));
            Assert.That(decision.Reason, Is.EqualTo(allowed ? DecisionReason.NameEntry : DecisionReason.NameNotAllowed));
            Assert.That(decision.Subject, Is.EqualTo(allowed ? "*.example.com" : null));
        });
    }

    /// <summary>A library user's trial: "a..example.org" was allowed by *.example.org, "api.example.com.." by its entry.</summary>
    [TestCase("a..example.com")]
    [TestCase("api.example.com..")]
    [TestCase(".api.example.com")]
    [TestCase("..")]
    public void ANameWithAnEmptyLabelIsDenied(string name)
    {
        EgressPolicy policy = Policy("*.example.com", "api.example.com", "*");

        PolicyDecision decision = policy.CheckName(name);

        Assert.That((decision.IsAllowed, decision.Reason), Is.EqualTo((false, DecisionReason.NameNotAllowed)));
        Assert.That(policy.CheckNamePort(name, 443), Is.Null, "check NAME:PORT and the server-name check's allowed-name test alike (a review)");
        Assert.That(policy.CheckName("api.example.com.").IsAllowed, Is.True, "one trailing dot is the root's label");
    }

    [Test]
    public void CheckNameReportsTheMostSpecificEntry()
    {
        EgressPolicy policy = Policy("*", "*.com", "*.example.com", "*.api.example.com", "exact.api.example.com");

        Assert.Multiple(() =>
        {
            Assert.That(policy.CheckName("exact.api.example.com").Subject, Is.EqualTo("exact.api.example.com"));
            Assert.That(policy.CheckName("x.exact.api.example.com").Subject, Is.EqualTo("*.api.example.com"));
            Assert.That(policy.CheckName("v1.api.example.com").Subject, Is.EqualTo("*.api.example.com"));
            Assert.That(policy.CheckName("api.example.com").Subject, Is.EqualTo("*.example.com"));
            Assert.That(policy.CheckName("example.com").Subject, Is.EqualTo("*.com"));
            Assert.That(policy.CheckName("example.net").ToString(), Is.EqualTo("allowed: allow-all entry \"*\""));
            Assert.That(policy.CheckName("example.net").Reason, Is.EqualTo(DecisionReason.AllowAll));
        });
    }

    [Test]
    public void CheckNameIgnoresAddressEntries()
    {
        EgressPolicy policy = Policy("198.18.0.10", "198.18.0.0/15");

        Assert.That(policy.CheckName("198.18.0.10").ToString(), Is.EqualTo("denied: name not in allowlist"));
    }

    [Test]
    public void CheckNameTakesSpans()
    {
        EgressPolicy policy = Policy("*.example.com");

        Assert.That(policy.CheckName("x.a.example.com".AsSpan(2)).Subject, Is.EqualTo("*.example.com"));
    }

    // ---- CheckAddress ----

    [Test]
    public void DisabledDeniesEverything()
    {
        EgressPolicy policy = EgressPolicy.Create(enabled: false, ["*", "api.example.com", "198.18.0.10", "10.0.0.0/8"], _cache);
        _cache.Learn("api.example.com", IPAddress.Parse("198.18.0.11"), TimeSpan.FromSeconds(60));

        Assert.Multiple(() =>
        {
            Assert.That(policy.IsEnabled, Is.False);
            Assert.That(policy.CheckAddress(IPAddress.Parse("198.18.0.10")).ToString(), Is.EqualTo("denied: egress disabled"));
            Assert.That(policy.CheckAddress(IPAddress.Parse("198.18.0.11")).ToString(), Is.EqualTo("denied: egress disabled"));
            Assert.That(policy.CheckAddress(IPAddress.Parse("10.1.2.3")).Reason, Is.EqualTo(DecisionReason.EgressDisabled));
            Assert.That(policy.CheckAddress(IPAddress.Parse("8.8.8.8")).IsAllowed, Is.False);
            Assert.That(policy.CheckName("api.example.com").ToString(), Is.EqualTo("denied: egress disabled"));
            Assert.That(policy.Learn("api.example.com", IPAddress.Parse("8.8.8.8"), TimeSpan.FromSeconds(60)).ToString(), Is.EqualTo("not learned: egress disabled"));
        });
    }

    [Test]
    public void EnabledWithNoEntriesDeniesEverything()
    {
        EgressPolicy policy = Policy();
        _cache.Learn("api.example.com", IPAddress.Parse("198.18.0.11"), TimeSpan.FromSeconds(60));

        Assert.Multiple(() =>
        {
            Assert.That(policy.CheckAddress(IPAddress.Parse("198.18.0.11")).ToString(), Is.EqualTo("denied: never learned from an allowed name"));
            Assert.That(policy.CheckAddress(IPAddress.Parse("8.8.8.8")).ToString(), Is.EqualTo("denied: never learned from an allowed name"));
            Assert.That(policy.CheckName("api.example.com").ToString(), Is.EqualTo("denied: name not in allowlist"));
            Assert.That(policy.Learn("api.example.com", IPAddress.Parse("8.8.8.8"), TimeSpan.FromSeconds(60)).ToString(), Is.EqualTo("not learned: name not in allowlist"));
        });
    }

    [TestCase("198.18.0.10", "allowed: static entry \"198.18.0.10\"")]
    [TestCase("::ffff:198.18.0.10", "allowed: static entry \"198.18.0.10\"")]
    [TestCase("198.18.0.11", "denied: never learned from an allowed name")]
    [TestCase("10.0.0.5", "allowed: static entry \"10.0.0.5\"")]
    [TestCase("10.0.0.6", "denied: internal range private 10.0.0.0/8")]
    [TestCase("192.168.7.1", "allowed: static entry \"192.168.0.0/16\"")]
    [TestCase("::ffff:192.168.7.1", "allowed: static entry \"192.168.0.0/16\"")]
    [TestCase("192.169.0.1", "denied: never learned from an allowed name")]
    [TestCase("2001:db8::1", "allowed: static entry \"2001:db8::1\"")]
    [TestCase("2001:db8::2", "denied: never learned from an allowed name")]
    [TestCase("fd00:1::9", "allowed: static entry \"fd00:1::/64\"")]
    [TestCase("fd00:2::9", "denied: internal range unique local fc00::/7")]
    [TestCase("169.254.169.254", "denied: internal range link-local 169.254.0.0/16 (instance metadata)")]
    [TestCase("::ffff:169.254.169.254", "denied: internal range link-local 169.254.0.0/16 (instance metadata)")]
    [TestCase("fd00:ec2::254", "denied: internal range instance metadata fd00:ec2::254 (unique local fc00::/7)")]
    public void StaticEntriesAllowEvenInternalAddresses(string address, string decision)
    {
        EgressPolicy policy = Policy("198.18.0.10", "10.0.0.5", "192.168.0.0/16", "[2001:db8::1]", "fd00:1::/64");

        Assert.That(policy.CheckAddress(IPAddress.Parse(address)).ToString(), Is.EqualTo(decision));
    }

    [Test]
    public void StaticEntryDecisionCarriesTheEntry()
    {
        PolicyDecision decision = Policy("198.18.0.0/15").CheckAddress(IPAddress.Parse("198.19.1.1"));

        Assert.Multiple(() =>
        {
            Assert.That(decision.IsAllowed, Is.True);
            Assert.That(decision.Reason, Is.EqualTo(DecisionReason.StaticEntry));
            Assert.That(decision.Subject, Is.EqualTo("198.18.0.0/15"));
            Assert.That(decision.Time, Is.Null);
            Assert.That(decision.ToString(), Is.EqualTo("allowed: static entry \"198.18.0.0/15\""));
        });
    }

    [Test]
    public void NarrowestNetworkIsReported()
    {
        EgressPolicy policy = Policy("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24");

        Assert.Multiple(() =>
        {
            Assert.That(policy.CheckAddress(IPAddress.Parse("10.1.2.3")).Subject, Is.EqualTo("10.1.2.0/24"));
            Assert.That(policy.CheckAddress(IPAddress.Parse("10.1.3.3")).Subject, Is.EqualTo("10.1.0.0/16"));
            Assert.That(policy.CheckAddress(IPAddress.Parse("10.2.3.3")).Subject, Is.EqualTo("10.0.0.0/8"));
        });
    }

    [Test]
    public void IPv6NetworksDoNotCoverIPv4AddressesUnlessWrittenAsMapped()
    {
        EgressPolicy policy = Policy("::/8", "::ffff:172.16.0.0/108");

        Assert.Multiple(() =>
        {
            Assert.That(policy.CheckAddress(IPAddress.Parse("10.1.2.3")).ToString(), Is.EqualTo("denied: internal range private 10.0.0.0/8"));
            Assert.That(policy.CheckAddress(IPAddress.Parse("::1")).ToString(), Is.EqualTo("allowed: static entry \"::/8\""));
            Assert.That(policy.CheckAddress(IPAddress.Parse("172.16.9.9")).ToString(), Is.EqualTo("allowed: static entry \"::ffff:172.16.0.0/108\""));
        });
    }

    [TestCase("8.8.8.8", "allowed: allow-all entry \"*\"")]
    [TestCase("198.18.0.10", "allowed: allow-all entry \"*\"")]
    [TestCase("2001:db8::1", "allowed: allow-all entry \"*\"")]
    [TestCase("169.254.169.254", "denied: internal range link-local 169.254.0.0/16 (instance metadata)")]
    [TestCase("127.0.0.1", "denied: internal range loopback 127.0.0.0/8")]
    [TestCase("::1", "denied: internal range loopback ::1")]
    [TestCase("::ffff:10.0.0.1", "denied: internal range private 10.0.0.0/8")]
    [TestCase("::10.0.0.1", "denied: internal range private 10.0.0.0/8 via IPv4-compatible ::/96")]
    [TestCase("64:ff9b::a9fe:a9fe", "denied: internal range link-local 169.254.0.0/16 (instance metadata) via NAT64 64:ff9b::/96")]
    [TestCase("fd00:ec2::254", "denied: internal range instance metadata fd00:ec2::254 (unique local fc00::/7)")]
    [TestCase("255.255.255.255", "denied: internal range broadcast 255.255.255.255")]
    public void AllowAllNeverOpensInternalRanges(string address, string decision) =>
        Assert.That(Policy("*").CheckAddress(IPAddress.Parse(address)).ToString(), Is.EqualTo(decision));

    [Test]
    public void AddressInUseIsAllowedPastTtlAndGraceAndSaysSo()
    {
        EgressPolicy policy = Policy("api.example.com");
        IPAddress address = IPAddress.Parse("198.18.0.10");
        policy.Learn("api.example.com", address, TimeSpan.FromSeconds(1));
        PolicyDecision first = policy.CheckConnection(address, 443, out AddressHold? busy);
        _time.Advance(TimeSpan.FromSeconds(95));

        PolicyDecision second = policy.CheckConnection(address, 443, out AddressHold? another);

        Assert.Multiple(() =>
        {
            Assert.That(first.Reason, Is.EqualTo(DecisionReason.Learned));
            Assert.That(second.IsAllowed, Is.True);
            Assert.That(second.Reason, Is.EqualTo(DecisionReason.LearnedInUse));
            Assert.That(second.ToString(), Is.EqualTo("allowed: learned from api.example.com, TTL expired, in use by 1 connection"));
            Assert.That(policy.CheckAddress(address).ToString(), Is.EqualTo("allowed: learned from api.example.com, TTL expired, in use by 2 connections"));
        });
        busy!.Dispose();
        another!.Dispose();
        _time.Advance(TimeSpan.FromSeconds(61));
        Assert.That(policy.CheckAddress(address).ToString(), Is.EqualTo("denied: learned from api.example.com, expired 1s ago"));
    }

    [Test]
    public void StaticAllowanceTakesNoHold()
    {
        EgressPolicy policy = Policy("198.18.0.10");

        PolicyDecision decision = policy.CheckConnection(IPAddress.Parse("198.18.0.10"), 443, out AddressHold? hold);

        Assert.That((decision.Reason, hold), Is.EqualTo((DecisionReason.StaticEntry, (AddressHold?)null)));
    }

    [Test]
    public void LearnedAddressIsAllowedUntilExpiryThenInGraceThenDenied()
    {
        EgressPolicy policy = Policy("api.example.com");
        IPAddress address = IPAddress.Parse("198.18.0.10");
        LearnResult learned = policy.Learn("API.Example.com.", address, TimeSpan.FromSeconds(120));
        Assert.That(learned.ToString(), Is.EqualTo("learned"));

        _time.Advance(TimeSpan.FromSeconds(78));
        PolicyDecision live = policy.CheckAddress(address);
        Assert.Multiple(() =>
        {
            Assert.That(live.IsAllowed, Is.True);
            Assert.That(live.Reason, Is.EqualTo(DecisionReason.Learned));
            Assert.That(live.Subject, Is.EqualTo("api.example.com"));
            Assert.That(live.Time, Is.EqualTo(TimeSpan.FromSeconds(42)));
            Assert.That(live.ToString(), Is.EqualTo("allowed: learned from api.example.com, expires in 42s"));
        });

        _time.Advance(TimeSpan.FromSeconds(42.5));
        PolicyDecision grace = policy.CheckAddress(address);
        Assert.Multiple(() =>
        {
            Assert.That(grace.IsAllowed, Is.True);
            Assert.That(grace.Reason, Is.EqualTo(DecisionReason.LearnedInGrace));
            Assert.That(grace.Time, Is.EqualTo(TimeSpan.FromSeconds(59.5)));
            Assert.That(grace.ToString(), Is.EqualTo("allowed: learned from api.example.com, TTL expired, in grace for 1m0s"));
        });

        _time.Advance(TimeSpan.FromSeconds(72.25));
        PolicyDecision expired = policy.CheckAddress(address);
        Assert.Multiple(() =>
        {
            Assert.That(expired.IsAllowed, Is.False);
            Assert.That(expired.Reason, Is.EqualTo(DecisionReason.LearnedExpired));
            Assert.That(expired.Time, Is.EqualTo(TimeSpan.FromSeconds(12.75)));
            Assert.That(expired.ToString(), Is.EqualTo("denied: learned from api.example.com, expired 12s ago"));
        });

        _time.Advance(TimeSpan.FromHours(1));
        Assert.That(policy.CheckAddress(address).ToString(), Is.EqualTo("denied: never learned from an allowed name"));
    }

    /// <summary>From the DNS trial: a connection to an address the full cache evicted was denied "never learned from an
    /// allowed name". The denial now names the name, the eviction and what to raise; the reason stays NeverLearned (the
    /// parent re-learns such an address from the request's host hint, as it does a forgotten one).</summary>
    [Test]
    public void AConnectionToAnEvictedAddressIsDeniedSayingItWasEvicted()
    {
        var cache = new AllowlistCache(new AllowlistCacheOptions { TimeProvider = _time, MaxEntries = 1 });
        EgressPolicy policy = EgressPolicy.Create(enabled: true, ["*.example.com"], cache);
        _ = policy.Learn("long.example.com", IPAddress.Parse("198.18.0.10"), TimeSpan.FromDays(1));
        _ = policy.Learn("max.example.com", IPAddress.Parse("198.18.0.11"), TimeSpan.FromDays(1));
        _time.Advance(TimeSpan.FromSeconds(65));

        PolicyDecision decision = policy.CheckConnection(IPAddress.Parse("198.18.0.10"), 80, out AddressHold? hold);

        Assert.Multiple(() =>
        {
            Assert.That(hold, Is.Null);
            Assert.That((decision.IsAllowed, decision.Reason, decision.Subject), Is.EqualTo((false, DecisionReason.NeverLearned, "long.example.com")));
            Assert.That(decision.ToString(), Is.EqualTo(
                "denied: learned from long.example.com, evicted 1m5s ago: the learned-address cache was full (raise [dns] cache_max_entries)"));
        });
    }

    [TestCase(0.25, "allowed: learned from api.example.com, expires in 1s")]
    [TestCase(59, "allowed: learned from api.example.com, expires in 59s")]
    [TestCase(60, "allowed: learned from api.example.com, expires in 1m0s")]
    [TestCase(3725, "allowed: learned from api.example.com, expires in 1h2m5s")]
    [TestCase(86399, "allowed: learned from api.example.com, expires in 23h59m59s")]
    public void DurationsAreWholeSecondsRoundedUpWhenRemaining(double remainingSeconds, string text)
    {
        var cache = new AllowlistCache(new AllowlistCacheOptions { TimeProvider = _time, TtlFloor = TimeSpan.Zero });
        EgressPolicy policy = EgressPolicy.Create(enabled: true, ["api.example.com"], cache);
        _ = policy.Learn("api.example.com", IPAddress.Parse("198.18.0.10"), TimeSpan.FromSeconds(remainingSeconds));

        Assert.That(policy.CheckAddress(IPAddress.Parse("198.18.0.10")).ToString(), Is.EqualTo(text));
    }

    [TestCase(0, "denied: learned from api.example.com, expired 0s ago")]
    [TestCase(0.99, "denied: learned from api.example.com, expired 0s ago")]
    [TestCase(125.5, "denied: learned from api.example.com, expired 2m5s ago")]
    public void DurationsAreWholeSecondsRoundedDownWhenElapsed(double elapsedSeconds, string text)
    {
        EgressPolicy policy = Policy("api.example.com");
        _ = policy.Learn("api.example.com", IPAddress.Parse("198.18.0.10"), TimeSpan.FromSeconds(30));
        _time.Advance(TimeSpan.FromSeconds(90 + elapsedSeconds));

        Assert.That(policy.CheckAddress(IPAddress.Parse("198.18.0.10")).ToString(), Is.EqualTo(text));
    }

    [Test]
    public void NeverLearnedDecision()
    {
        PolicyDecision decision = Policy("api.example.com").CheckAddress(IPAddress.Parse("198.18.0.10"));

        Assert.Multiple(() =>
        {
            Assert.That(decision.IsAllowed, Is.False);
            Assert.That(decision.Reason, Is.EqualTo(DecisionReason.NeverLearned));
            Assert.That(decision.Subject, Is.Null);
            Assert.That(decision.Time, Is.Null);
            Assert.That(decision.ToString(), Is.EqualTo("denied: never learned from an allowed name"));
        });
    }

    [Test]
    public void InternalRangeDecisionCarriesTheRange()
    {
        PolicyDecision decision = Policy("api.example.com").CheckAddress(IPAddress.Parse("169.254.169.254"));

        Assert.Multiple(() =>
        {
            Assert.That(decision.IsAllowed, Is.False);
            Assert.That(decision.Reason, Is.EqualTo(DecisionReason.InternalRange));
            Assert.That(decision.Subject, Is.EqualTo("link-local 169.254.0.0/16 (instance metadata)"));
            Assert.That(decision.ToString(), Is.EqualTo("denied: internal range link-local 169.254.0.0/16 (instance metadata)"));
        });
    }

    [Test]
    public void NameDecisionCarriesTheEntry()
    {
        PolicyDecision decision = Policy("*.example.com").CheckName("a.example.com");

        Assert.Multiple(() =>
        {
            Assert.That(decision.IsAllowed, Is.True);
            Assert.That(decision.Reason, Is.EqualTo(DecisionReason.NameEntry));
            Assert.That(decision.Subject, Is.EqualTo("*.example.com"));
            Assert.That(decision.Time, Is.Null);
        });
    }

    // ---- Learn ----

    [TestCase("127.0.0.1", "loopback 127.0.0.0/8")]
    [TestCase("169.254.169.254", "link-local 169.254.0.0/16 (instance metadata)")]
    [TestCase("10.0.0.1", "private 10.0.0.0/8")]
    [TestCase("::ffff:192.168.1.1", "private 192.168.0.0/16")]
    [TestCase("fd00:ec2::254", "instance metadata fd00:ec2::254 (unique local fc00::/7)")]
    [TestCase("::1", "loopback ::1")]
    public void AnswersIntoInternalRangesAreNotLearned(string address, string rangeName)
    {
        EgressPolicy policy = Policy("*", "api.example.com");
        IPAddress ip = IPAddress.Parse(address);

        LearnResult result = policy.Learn("api.example.com", ip, TimeSpan.FromSeconds(60));

        Assert.Multiple(() =>
        {
            Assert.That(result.IsLearned, Is.False);
            Assert.That(result.Outcome, Is.EqualTo(LearnOutcome.InternalRange));
            Assert.That(result.RangeName, Is.EqualTo(rangeName));
            Assert.That(result.ToString(), Is.EqualTo($"not learned: internal range {rangeName} (DNS rebinding protection)"));
            Assert.That(_cache.Count, Is.Zero);
            Assert.That(policy.CheckAddress(ip).ToString(), Is.EqualTo($"denied: internal range {rangeName}"));
        });
    }

    [Test]
    public void InternalAddressInTheCacheIsStillDenied()
    {
        EgressPolicy policy = Policy("api.example.com");
        _cache.Learn("api.example.com", IPAddress.Parse("10.0.0.1"), TimeSpan.FromSeconds(60));

        Assert.That(policy.CheckAddress(IPAddress.Parse("10.0.0.1")).ToString(), Is.EqualTo("denied: internal range private 10.0.0.0/8"));
    }

    [Test]
    public void InternalAnswersCoveredByAnExplicitEntryAreLearned()
    {
        EgressPolicy policy = Policy("internal.example.com", "10.0.0.0/24", "fd00:1::5");

        LearnResult v4 = policy.Learn("internal.example.com", IPAddress.Parse("10.0.0.7"), TimeSpan.FromSeconds(60));
        LearnResult v6 = policy.Learn("internal.example.com", IPAddress.Parse("fd00:1::5"), TimeSpan.FromSeconds(60));
        LearnResult outside = policy.Learn("internal.example.com", IPAddress.Parse("10.0.1.7"), TimeSpan.FromSeconds(60));

        Assert.Multiple(() =>
        {
            Assert.That(v4.Outcome, Is.EqualTo(LearnOutcome.Learned));
            Assert.That(v4.IsLearned, Is.True);
            Assert.That(v4.RangeName, Is.Null);
            Assert.That(v6.Outcome, Is.EqualTo(LearnOutcome.Learned));
            Assert.That(outside.Outcome, Is.EqualTo(LearnOutcome.InternalRange));
            Assert.That(_cache.Count, Is.EqualTo(2));
            Assert.That(_cache.Lookup(IPAddress.Parse("10.0.0.7")).Name, Is.EqualTo("internal.example.com"));
        });
    }

    [Test]
    public void AnswersForNamesOutsideTheAllowlistAreNotLearned()
    {
        EgressPolicy policy = Policy("*.example.com");

        LearnResult apex = policy.Learn("example.com", IPAddress.Parse("198.18.0.10"), TimeSpan.FromSeconds(60));
        LearnResult other = policy.Learn("evil.net", IPAddress.Parse("198.18.0.11"), TimeSpan.FromSeconds(60));
        LearnResult allowed = policy.Learn("a.example.com", IPAddress.Parse("198.18.0.12"), TimeSpan.FromSeconds(60));

        Assert.Multiple(() =>
        {
            Assert.That(apex.Outcome, Is.EqualTo(LearnOutcome.NameNotAllowed));
            Assert.That(other.ToString(), Is.EqualTo("not learned: name not in allowlist"));
            Assert.That(allowed.IsLearned, Is.True);
            Assert.That(_cache.Count, Is.EqualTo(1));
            Assert.That(policy.CheckAddress(IPAddress.Parse("198.18.0.10")).Reason, Is.EqualTo(DecisionReason.NeverLearned));
            Assert.That(policy.CheckAddress(IPAddress.Parse("198.18.0.12")).ToString(), Is.EqualTo("allowed: learned from a.example.com, expires in 1m0s"));
        });
    }

    [Test]
    public void AllowAllTakesPrecedenceOverTheCache()
    {
        EgressPolicy policy = Policy("*");
        _ = policy.Learn("api.example.com", IPAddress.Parse("198.18.0.10"), TimeSpan.FromSeconds(60));

        Assert.That(policy.CheckAddress(IPAddress.Parse("198.18.0.10")).ToString(), Is.EqualTo("allowed: allow-all entry \"*\""));
    }

    [Test]
    public void StaticEntryTakesPrecedenceOverTheCache()
    {
        EgressPolicy policy = Policy("api.example.com", "198.18.0.10");
        _ = policy.Learn("api.example.com", IPAddress.Parse("198.18.0.10"), TimeSpan.FromSeconds(60));

        Assert.That(policy.CheckAddress(IPAddress.Parse("198.18.0.10")).ToString(), Is.EqualTo("allowed: static entry \"198.18.0.10\""));
    }

    [Test]
    public void ArgumentsAreChecked()
    {
        EgressPolicy policy = Policy("api.example.com");

        Assert.Multiple(() =>
        {
            Assert.Throws<ArgumentNullException>(() => EgressPolicy.Create(true, null!, _cache));
            Assert.Throws<ArgumentNullException>(() => EgressPolicy.Create(true, [], null!));
            Assert.Throws<ArgumentNullException>(() => policy.CheckAddress(null!));
            Assert.Throws<ArgumentNullException>(() => policy.CheckName((string)null!));
            Assert.Throws<ArgumentNullException>(() => policy.Learn(null!, IPAddress.Loopback, TimeSpan.Zero));
            Assert.Throws<ArgumentNullException>(() => policy.Learn("api.example.com", null!, TimeSpan.Zero));
        });
    }

    [Test]
    public void ChecksDoNotAllocate()
    {
        EgressPolicy policy = Policy("api.example.com", "*.example.org", "198.18.0.0/15", "10.0.0.5");
        EgressPolicy allowAll = Policy("*");
        IPAddress learned = IPAddress.Parse("203.0.113.9");
        _ = policy.Learn("api.example.com", learned, TimeSpan.FromSeconds(60));
        IPAddress[] addresses = [learned, IPAddress.Parse("198.19.0.1"), IPAddress.Parse("10.0.0.5"), IPAddress.Parse("169.254.169.254"), IPAddress.Parse("8.8.8.8")];
        string[] names = ["API.example.com.", "a.b.example.org", "example.org", "evil.net"];
        int rounds = 0;
        int allowed = 0;

        long allocated = Allocations.LeastPerRound(() =>
        {
            rounds++;
            for (int i = 0; i < 50; i++)
            {
                allowed += Run();
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(allocated, Is.Zero);
            Assert.That(allowed, Is.EqualTo(rounds * 50 * 12));
        });

        int Run()
        {
            int count = 0;
            foreach (IPAddress address in addresses)
            {
                count += policy.CheckAddress(address).IsAllowed ? 1 : 0;
                count += allowAll.CheckAddress(address).IsAllowed ? 1 : 0;
            }

            foreach (string name in names)
            {
                count += policy.CheckName(name).IsAllowed ? 1 : 0;
                count += allowAll.CheckName(name).IsAllowed ? 1 : 0;
            }

            return count;
        }
    }

    [TestCase("203.0.113.7:443", "203.0.113.7", 443, "allowed: static entry \"203.0.113.7:443\"")]
    [TestCase("203.0.113.7:443", "203.0.113.7", 80, "denied: port not allowed by \"203.0.113.7:443\"")]
    [TestCase("203.0.113.0/24:8000-8100", "203.0.113.9", 8050, "allowed: static entry \"203.0.113.0/24:8000-8100\"")]
    [TestCase("203.0.113.0/24:8000-8100", "203.0.113.9", 22, "denied: port not allowed by \"203.0.113.0/24:8000-8100\"")]
    [TestCase("[2001:db8::1]:443", "2001:db8::1", 443, "allowed: static entry \"[2001:db8::1]:443\"")]
    [TestCase("[2001:db8::1]:443", "2001:db8::1", 8443, "denied: port not allowed by \"[2001:db8::1]:443\"")]
    [TestCase("*:443", "198.51.100.1", 443, "allowed: allow-all entry \"*:443\"")] // a trial: the ports were dropped
    [TestCase("*:443", "198.51.100.1", 25, "denied: port not allowed by \"*:443\"")]
    [TestCase("*:443", "10.0.0.1", 443, "denied: internal range private 10.0.0.0/8")]
    [TestCase("203.0.113.7", "203.0.113.7", 25, "allowed: static entry \"203.0.113.7\"")]
    [TestCase("203.0.113.7:443", "203.0.113.7", 0, "denied: port not allowed by \"203.0.113.7:443\"")]
    public void StaticEntriesAllowOnlyTheirPorts(string entry, string address, int port, string expected)
    {
        PolicyDecision decision = Policy(entry).CheckDestination(new IPEndPoint(IPAddress.Parse(address), port));

        Assert.That(decision.ToString(), Is.EqualTo(expected));
        Assert.That(decision.Reason == DecisionReason.PortNotAllowed, Is.EqualTo(expected.Contains("port not allowed", StringComparison.Ordinal)));
    }

    [Test]
    public void TheSameAddressUnderTwoEntriesAllowsTheUnionOfTheirPorts()
    {
        EgressPolicy policy = Policy("203.0.113.7:443", "203.0.113.7:25");

        Assert.Multiple(() =>
        {
            Assert.That(policy.CheckDestination(new IPEndPoint(IPAddress.Parse("203.0.113.7"), 443)).IsAllowed, Is.True);
            Assert.That(policy.CheckDestination(new IPEndPoint(IPAddress.Parse("203.0.113.7"), 25)).ToString(), Is.EqualTo("allowed: static entry \"203.0.113.7:25\""));
            Assert.That(policy.CheckDestination(new IPEndPoint(IPAddress.Parse("203.0.113.7"), 80)).ToString(), Is.EqualTo("denied: port not allowed by \"203.0.113.7:443\""));
            Assert.That(policy.CheckAddress(IPAddress.Parse("203.0.113.7")).IsAllowed, Is.True, "without a port: the address is allowed on some port");
        });
    }

    [Test]
    public void ALearnedAddressAllowsThePortsOfTheEntryItsNameWasAllowedThrough()
    {
        EgressPolicy policy = Policy("api.stripe.com:443", "*.example.com:443,8443", "smtp.example.com:587,465");
        IPAddress stripe = IPAddress.Parse("198.51.100.10"), smtp = IPAddress.Parse("198.51.100.20"), web = IPAddress.Parse("198.51.100.30");
        policy.Learn("api.stripe.com", stripe, TimeSpan.FromSeconds(300));
        policy.Learn("smtp.example.com", smtp, TimeSpan.FromSeconds(300));
        policy.Learn("www.example.com", web, TimeSpan.FromSeconds(300));

        Assert.Multiple(() =>
        {
            Assert.That(policy.CheckName("api.stripe.com").ToString(), Is.EqualTo("allowed: name matches \"api.stripe.com:443\""), "names are decided without ports");
            Assert.That(policy.CheckDestination(new IPEndPoint(stripe, 443)).Reason, Is.EqualTo(DecisionReason.Learned));
            Assert.That(policy.CheckDestination(new IPEndPoint(stripe, 22)).ToString(), Is.EqualTo("denied: port not allowed by \"api.stripe.com:443\""));
            Assert.That(policy.CheckDestination(new IPEndPoint(smtp, 465)).IsAllowed, Is.True, "the exact entry decides, not the wildcard that also matches");
            Assert.That(policy.CheckDestination(new IPEndPoint(smtp, 443)).ToString(), Is.EqualTo("denied: port not allowed by \"smtp.example.com:587,465\""));
            Assert.That(policy.CheckDestination(new IPEndPoint(web, 8443)).IsAllowed, Is.True);
            Assert.That(policy.CheckDestination(new IPEndPoint(web, 80)).ToString(), Is.EqualTo("denied: port not allowed by \"*.example.com:443,8443\""));
            Assert.That(policy.CheckNamePort("smtp.example.com", 25), Is.EqualTo(("smtp.example.com:587,465", false)));
            Assert.That(policy.CheckNamePort("api.stripe.com", 443), Is.EqualTo(("api.stripe.com:443", true)));
        });
    }

    [Test]
    public void AConnectionOnAPortTheEntryDoesNotAllowTakesNoHold()
    {
        EgressPolicy policy = Policy("api.stripe.com:443");
        IPAddress stripe = IPAddress.Parse("198.51.100.10");
        policy.Learn("api.stripe.com", stripe, TimeSpan.FromSeconds(300));

        PolicyDecision denied = policy.CheckConnection(stripe, 25, out AddressHold? none);
        PolicyDecision allowed = policy.CheckConnection(stripe, 443, out AddressHold? held);

        Assert.Multiple(() =>
        {
            Assert.That((denied.Reason, none), Is.EqualTo((DecisionReason.PortNotAllowed, (AddressHold?)null)));
            Assert.That((allowed.Reason, held), Is.Not.EqualTo((DecisionReason.PortNotAllowed, (AddressHold?)null)));
            Assert.That(_cache.ConnectionsThrough(stripe), Is.EqualTo(1), "only the allowed connection holds the address");
        });
        held!.Dispose();
    }

    /// <summary>Two policies sharing one cache (found by a library consumer's trial): an address another policy learned,
    /// or one put in the cache directly, allowed a connection under a policy that lists neither name.</summary>
    [Test]
    public void AnAddressInASharedCacheIsAllowedOnlyThroughANameThisPolicyAllows()
    {
        EgressPolicy first = Policy("a.test");
        EgressPolicy second = Policy("b.test");
        IPAddress learnedByFirst = IPAddress.Parse("203.0.113.77");
        IPAddress putDirectly = IPAddress.Parse("203.0.113.78");
        IPAddress sharedName = IPAddress.Parse("203.0.113.79");
        first.Learn("a.test", learnedByFirst, TimeSpan.FromMinutes(5));
        _cache.Learn("zzz.test", putDirectly, TimeSpan.FromMinutes(5));
        first.Learn("a.test", sharedName, TimeSpan.FromMinutes(5));
        second.Learn("b.test", sharedName, TimeSpan.FromMinutes(5));

        Assert.Multiple(() =>
        {
            Assert.That(first.CheckAddress(learnedByFirst).IsAllowed, Is.True);
            Assert.That(second.CheckAddress(learnedByFirst).ToString(), Is.EqualTo("denied: name a.test not in allowlist"));
            Assert.That(first.CheckAddress(putDirectly).ToString(), Is.EqualTo("denied: name zzz.test not in allowlist"));
            Assert.That(first.CheckDestination(new IPEndPoint(putDirectly, 443)).IsAllowed, Is.False);
            Assert.That(second.CheckAddress(sharedName).IsAllowed, Is.True, "learned by both: each allows it through its own name");
            Assert.That(first.CheckAddress(sharedName).IsAllowed, Is.True);
        });
    }

    /// <summary>The same with ports: one pass over the address's names decides both whether one of them is this
    /// policy's and whether its entries allow the port, so a name of another policy's is refused as such, never as a
    /// port this policy does not allow.</summary>
    [Test]
    public void WithPortsAnAddressInASharedCacheIsCheckedForItsNameBeforeItsPort()
    {
        EgressPolicy first = Policy("a.test:443");
        EgressPolicy second = Policy("b.test:443", "c.test:8443");
        IPAddress learnedByFirst = IPAddress.Parse("203.0.113.80");
        IPAddress learnedByBoth = IPAddress.Parse("203.0.113.81");
        first.Learn("a.test", learnedByFirst, TimeSpan.FromMinutes(5));
        first.Learn("a.test", learnedByBoth, TimeSpan.FromMinutes(5));
        second.Learn("c.test", learnedByBoth, TimeSpan.FromMinutes(5));

        Assert.Multiple(() =>
        {
            Assert.That(first.CheckDestination(new IPEndPoint(learnedByFirst, 443)).IsAllowed, Is.True);
            Assert.That(first.CheckDestination(new IPEndPoint(learnedByFirst, 80)).Reason, Is.EqualTo(DecisionReason.PortNotAllowed));
            Assert.That(second.CheckDestination(new IPEndPoint(learnedByFirst, 443)).Reason, Is.EqualTo(DecisionReason.NameNotAllowed));
            Assert.That(second.CheckDestination(new IPEndPoint(learnedByFirst, 80)).Reason, Is.EqualTo(DecisionReason.NameNotAllowed));
            Assert.That(second.CheckDestination(new IPEndPoint(learnedByBoth, 8443)).IsAllowed, Is.True, "through its own name's entry");
            Assert.That(second.CheckDestination(new IPEndPoint(learnedByBoth, 443)).Reason, Is.EqualTo(DecisionReason.PortNotAllowed),
                "a.test's port is not this policy's to give");
            Assert.That(first.CheckDestination(new IPEndPoint(learnedByBoth, 443)).IsAllowed, Is.True);
        });
    }

    private EgressPolicy Policy(params string[] destinations) => EgressPolicy.Create(enabled: true, destinations, _cache);
}
