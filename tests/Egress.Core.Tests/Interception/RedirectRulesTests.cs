using System.Net;
using Egress.Interception;

namespace Egress.Tests.Interception;

public sealed class RedirectRulesTests
{
    private static readonly string[] DefaultAddLines =
    [
        "ip route replace default via 127.0.0.1 dev lo",
        "ip -6 route replace default dev lo",
        "iptables -w -t nat -A OUTPUT -p tcp ! -d 127.0.0.0/8 -j DNAT --to-destination 127.0.0.1:4444",
        "iptables -w -t nat -A POSTROUTING -o lo -s 0.0.0.0/32 -j SNAT --to-source 127.0.0.1",
        "ip6tables -w -t nat -A OUTPUT -p tcp ! -d ::1/128 -j DNAT --to-destination [::1]:4444",
        "ip6tables -w -t nat -A POSTROUTING -o lo -s ::/128 -j SNAT --to-source ::1",
    ];

    [Test]
    public void DefaultRulesAreExactlyTheseCommandLines() =>
        Assert.That(RedirectRules.For().Select(r => r.AddCommandLine), Is.EqualTo(DefaultAddLines));

    [Test]
    public void DefaultPortIs4444() =>
        Assert.That(RedirectRules.For(RedirectRules.DefaultProxyPort).Select(r => r.AddCommandLine), Is.EqualTo(DefaultAddLines));

    [Test]
    public void CustomPortChangesOnlyTheDnatTargets()
    {
        string[] expected = [.. DefaultAddLines.Select(line => line.Replace(":4444", ":8080", StringComparison.Ordinal))];

        Assert.That(RedirectRules.For(8080).Select(r => r.AddCommandLine), Is.EqualTo(expected));
        Assert.That(expected[2], Does.EndWith("--to-destination 127.0.0.1:8080"));
        Assert.That(expected[4], Does.EndWith("--to-destination [::1]:8080"));
    }

    [Test]
    public void FamiliesAndCheckStyles()
    {
        var rules = RedirectRules.For();

        Assert.That(rules.Select(r => r.IsIPv6), Is.EqualTo(new[] { false, true, false, false, true, true }));
        Assert.That(rules.Select(r => r.Program), Is.EqualTo(new[] { "ip", "ip", "iptables", "iptables", "ip6tables", "ip6tables" }));
        Assert.That(rules.Select(r => r.CheckPrintsMatch), Is.EqualTo(new[] { true, true, false, false, false, false }));
    }

    [Test]
    public void NetfilterCheckAndRemoveAreAddWithTheirOwnVerb()
    {
        foreach (RedirectRule rule in RedirectRules.For().Where(r => r.Program != "ip"))
        {
            int verb = rule.Add.ToList().IndexOf("-A");
            Assert.That(verb, Is.EqualTo(3), rule.AddCommandLine);
            Assert.That(rule.Check, Is.EqualTo(rule.Add.Select((a, i) => i == verb ? "-C" : a)), rule.Description);
            Assert.That(rule.Remove, Is.EqualTo(rule.Add.Select((a, i) => i == verb ? "-D" : a)), rule.Description);
        }
    }

    [Test]
    public void RouteCheckAndRemoveAreAddWithTheirOwnVerb()
    {
        foreach (RedirectRule rule in RedirectRules.For().Where(r => r.Program == "ip"))
        {
            int verb = rule.Add.ToList().IndexOf("replace");
            Assert.That(rule.Check, Is.EqualTo(rule.Add.Select((a, i) => i == verb ? "show" : a)), rule.Description);
            Assert.That(rule.Remove, Is.EqualTo(rule.Add.Select((a, i) => i == verb ? "del" : a)), rule.Description);
        }

        Assert.That(RedirectRules.For()[0].RemoveCommandLine, Is.EqualTo("ip route del default via 127.0.0.1 dev lo"));
        Assert.That(RedirectRules.For()[1].RemoveCommandLine, Is.EqualTo("ip -6 route del default dev lo"));
    }

    [TestCase(0)]
    [TestCase(-1)]
    [TestCase(65536)]
    public void PortOutOfRangeIsRejected(int port) =>
        Assert.That(() => RedirectRules.For(port), Throws.InstanceOf<ArgumentOutOfRangeException>());

    [TestCase(1)]
    [TestCase(65535)]
    public void PortRangeEndsAreAccepted(int port) =>
        Assert.That(RedirectRules.For(port)[2].AddCommandLine, Does.EndWith($"127.0.0.1:{port}"));

    [Test]
    public void DefaultProxyListenGivesTheDefaultRules() =>
        Assert.That(
            RedirectRules.ForProxyListen([IPEndPoint.Parse("127.0.0.1:4444"), IPEndPoint.Parse("[::1]:4444")]).Select(r => r.AddCommandLine),
            Is.EqualTo(DefaultAddLines));

    [Test]
    public void EachFamilyRedirectsToItsOwnListenPort()
    {
        var rules = RedirectRules.ForProxyListen([IPEndPoint.Parse("[::1]:6666"), IPEndPoint.Parse("127.0.0.1:5555")]);

        Assert.That(rules.Select(r => r.AddCommandLine), Is.EqualTo(DefaultAddLines
            .Select(line => line.Replace("127.0.0.1:4444", "127.0.0.1:5555", StringComparison.Ordinal).Replace("[::1]:4444", "[::1]:6666", StringComparison.Ordinal))));
        Assert.That(rules[2].AddCommandLine, Does.EndWith("--to-destination 127.0.0.1:5555"));
        Assert.That(rules[4].AddCommandLine, Does.EndWith("--to-destination [::1]:6666"));
    }

    [Test]
    public void AFamilyWithoutAListenerIsStillRedirectedToAPortWhereTheProxyDoesNotListen()
    {
        // Fail closed: without its rules, that family's TCP would leave wherever a route leads, around the proxy.
        var ipv4Only = RedirectRules.ForProxyListen([IPEndPoint.Parse("127.0.0.1:4444")]);
        var ipv6Only = RedirectRules.ForProxyListen([IPEndPoint.Parse("[::1]:5555")]);

        Assert.Multiple(() =>
        {
            Assert.That(ipv4Only.Select(r => r.AddCommandLine), Is.EqualTo(DefaultAddLines));
            Assert.That(ipv4Only.Single(r => r.IsIPv6 && r.Program == "ip6tables" && r.Add.Contains("DNAT")).Description, Does.Contain("does not listen"));
            Assert.That(ipv4Only.Single(r => !r.IsIPv6 && r.Program == "iptables" && r.Add.Contains("DNAT")).Description, Does.Not.Contain("does not listen"));
            Assert.That(ipv6Only.Select(r => r.AddCommandLine), Has.Some.EndWith("--to-destination 127.0.0.1:5555"));
            Assert.That(ipv6Only.Select(r => r.AddCommandLine), Has.Some.EndWith("--to-destination [::1]:5555"));
            Assert.That(ipv6Only.Count, Is.EqualTo(6));
        });
    }

    [Test]
    public void WildcardListenersAreReachedOnLoopback() =>
        Assert.That(
            RedirectRules.Targets([IPEndPoint.Parse("0.0.0.0:4000"), IPEndPoint.Parse("[::]:4001")]),
            Is.EqualTo(new[] { IPEndPoint.Parse("127.0.0.1:4000"), IPEndPoint.Parse("[::1]:4001") }));

    [Test]
    public void OtherLoopbackAddressesAreKept() =>
        Assert.That(RedirectRules.ForProxyListen([IPEndPoint.Parse("127.0.0.2:4444")]).Select(r => r.AddCommandLine), Has.Some.EndWith("--to-destination 127.0.0.2:4444"));

    [Test]
    public void TheFirstLoopbackListenerOfAFamilyIsTheTarget() =>
        Assert.That(
            RedirectRules.Targets([IPEndPoint.Parse("10.0.0.5:4444"), IPEndPoint.Parse("[::1]:7000"), IPEndPoint.Parse("127.0.0.1:5000"), IPEndPoint.Parse("127.0.0.1:5001")]),
            Is.EqualTo(new[] { IPEndPoint.Parse("127.0.0.1:5000"), IPEndPoint.Parse("[::1]:7000") }));

    [Test]
    public void AFamilyListeningOnlyOffLoopbackIsRefusedWithAWayOut()
    {
        Assert.That(
            () => RedirectRules.ForProxyListen([IPEndPoint.Parse("10.0.0.5:4444"), IPEndPoint.Parse("[::1]:4444")]),
            Throws.ArgumentException.With.Message.StartsWith(
                "The proxy's IPv4 listen address (10.0.0.5:4444) cannot take redirected connections: they travel over lo, so the proxy must also listen on a loopback address, such as 127.0.0.1:4444."));
        Assert.That(
            () => RedirectRules.Targets([IPEndPoint.Parse("127.0.0.1:4444"), IPEndPoint.Parse("[2001:db8::1]:4444"), IPEndPoint.Parse("[2001:db8::2]:4444")]),
            Throws.ArgumentException.With.Message.StartsWith("The proxy's IPv6 listen addresses ([2001:db8::1]:4444, [2001:db8::2]:4444) cannot take redirected connections")
                .And.Message.Contains("such as [::1]:4444."));
    }

    [Test]
    public void NoListenerAtAllIsRefused() =>
        Assert.That(() => RedirectRules.ForProxyListen([]), Throws.ArgumentException.With.Message.StartsWith("The proxy listens nowhere"));
}
