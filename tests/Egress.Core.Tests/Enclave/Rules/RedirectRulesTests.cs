using System.Net;
using Egress.Enclave.Rules;

namespace Egress.Tests.Enclave.Rules;

public sealed class RedirectRulesTests
{
    private static readonly string[] DefaultAddLines =
    [
        "ip route replace default via 127.0.0.1 dev lo src 127.0.0.1",
        "ip -6 route replace default dev lo",
        "ip -4 addr replace 127.0.0.2/32 dev lo",
        "ip -6 addr replace fd65:6772:6573::1/128 dev lo nodad",
        "iptables -w -t nat -A OUTPUT -p udp --dport 53 ! -d 127.0.0.1/32 -j DNAT --to-destination 127.0.0.1:53",
        "iptables -w -t nat -A OUTPUT -p tcp --dport 53 ! -d 127.0.0.1/32 -j DNAT --to-destination 127.0.0.1:53",
        "iptables -w -t nat -A OUTPUT -p tcp ! -d 127.0.0.0/8 -j DNAT --to-destination 127.0.0.1:4444",
        "iptables -w -t nat -A POSTROUTING -o lo -s 0.0.0.0/32 -j SNAT --to-source 127.0.0.1",
        "iptables -w -t filter -A OUTPUT -p udp -m conntrack --ctstate NEW -m addrtype ! --dst-type LOCAL -j REJECT --reject-with icmp-port-unreachable",
        "ip6tables -w -t nat -A OUTPUT -p udp --dport 53 ! -d ::1/128 -j DNAT --to-destination [::1]:53",
        "ip6tables -w -t nat -A OUTPUT -p tcp --dport 53 ! -d ::1/128 -j DNAT --to-destination [::1]:53",
        "ip6tables -w -t nat -A OUTPUT -p tcp -d fd65:6772:6573::1/128 -j RETURN",
        "ip6tables -w -t nat -A OUTPUT -p tcp ! -d ::1/128 -j DNAT --to-destination [::1]:4444",
        "ip6tables -w -t nat -A POSTROUTING -o lo -s ::/128 -j SNAT --to-source ::1",
        "ip6tables -w -t filter -A OUTPUT -p udp -m conntrack --ctstate NEW -m addrtype ! --dst-type LOCAL -j REJECT --reject-with icmp6-port-unreachable",
    ];

    private static readonly IPEndPoint[] DefaultDns = [IPEndPoint.Parse("127.0.0.1:53"), IPEndPoint.Parse("[::1]:53")];

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
        Assert.That(expected[6], Does.EndWith("--to-destination 127.0.0.1:8080"));
        Assert.That(expected[12], Does.EndWith("--to-destination [::1]:8080"));
    }

    [Test]
    public void ACustomDnsPortChangesTheDnsTargetsAndTakesPort53OfTheForwardersOwnAddressToo()
    {
        // The forwarder's own address is no longer left out: resolv.conf's "nameserver 127.0.0.1" asks port 53 there,
        // which a trial found refused with the forwarder on 5353 (the exclusion only keeps port 53 off a forwarder on 53).
        string[] expected = [.. DefaultAddLines.Select(line => !line.Contains("--dport 53", StringComparison.Ordinal) ? line : line
            .Replace("0.1:53", "0.1:5353", StringComparison.Ordinal).Replace("[::1]:53", "[::1]:5353", StringComparison.Ordinal)
            .Replace(" ! -d 127.0.0.1/32", string.Empty, StringComparison.Ordinal).Replace(" ! -d ::1/128", string.Empty, StringComparison.Ordinal))];

        Assert.That(RedirectRules.For(dnsPort: 5353).Select(r => r.AddCommandLine), Is.EqualTo(expected));
        Assert.That(expected.Count(line => line.EndsWith(":5353", StringComparison.Ordinal)), Is.EqualTo(4));
    }

    [Test]
    public void DnsToAnyResolverComesBeforeTheProxysRuleInEachFamily()
    {
        // nat OUTPUT takes the first matching rule: TCP to port 53 must meet the DNS rule before the proxy's (and, for
        // IPv6, TCP to the enclave's own address the RETURN before it).
        var lines = RedirectRules.For().Select(r => r.AddCommandLine).ToList();
        foreach (var program in new[] { "iptables ", "ip6tables " })
        {
            var family = lines.Where(l => l.StartsWith(program + "-w -t nat", StringComparison.Ordinal) && l.Contains("OUTPUT", StringComparison.Ordinal)).ToList();
            Assert.That(family, Has.Count.EqualTo(program == "iptables " ? 3 : 4));
            Assert.That(family[0], Does.Contain("-p udp --dport 53"));
            Assert.That(family[1], Does.Contain("-p tcp --dport 53"));
            Assert.That(family[^1], Does.Not.Contain("--dport").And.Contain("-j DNAT"));
        }
    }

    [Test]
    public void FamiliesAndCheckStyles()
    {
        var rules = RedirectRules.For();

        Assert.That(rules.Select(r => r.IsIPv6), Is.EqualTo(new[] { false, true, false, true, false, false, false, false, false, true, true, true, true, true, true }));
        Assert.That(rules.Select(r => r.Program), Is.EqualTo(new[] { "ip", "ip", "ip", "ip", "iptables", "iptables", "iptables", "iptables", "iptables", "ip6tables", "ip6tables", "ip6tables", "ip6tables", "ip6tables", "ip6tables" }));
        Assert.That(rules.Select(r => r.CheckPrintsMatch), Is.EqualTo(new[] { true, true, true, true, false, false, false, false, false, false, false, false, false, false, false }));
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
        foreach (RedirectRule rule in RedirectRules.For().Where(r => r.Program == "ip" && r.Add.Contains("route")))
        {
            int verb = rule.Add.ToList().IndexOf("replace");
            Assert.That(rule.Check, Is.EqualTo(rule.Add.Select((a, i) => i == verb ? "show" : a)), rule.Description);
            Assert.That(rule.Remove, Is.EqualTo(rule.Add.Select((a, i) => i == verb ? "del" : a)), rule.Description);
        }

        Assert.That(RedirectRules.For()[0].RemoveCommandLine, Is.EqualTo("ip route del default via 127.0.0.1 dev lo src 127.0.0.1"));
        Assert.That(RedirectRules.For()[1].RemoveCommandLine, Is.EqualTo("ip -6 route del default dev lo"));
    }

    [Test]
    public void AddressesAreCheckedOnLoAndRemovedWithoutTheAddOnlyFlags()
    {
        var rules = RedirectRules.For();

        Assert.That(string.Join(' ', ["ip", .. rules[2].Check]), Is.EqualTo("ip -4 addr show dev lo to 127.0.0.2/32"));
        Assert.That(string.Join(' ', ["ip", .. rules[3].Check]), Is.EqualTo("ip -6 addr show dev lo to fd65:6772:6573::1/128"));
        Assert.That(rules[2].RemoveCommandLine, Is.EqualTo("ip -4 addr del 127.0.0.2/32 dev lo"));
        Assert.That(rules[3].RemoveCommandLine, Is.EqualTo("ip -6 addr del fd65:6772:6573::1/128 dev lo"));
    }

    [TestCase(0)]
    [TestCase(-1)]
    [TestCase(65536)]
    public void PortOutOfRangeIsRejected(int port) =>
        Assert.That(() => RedirectRules.For(port), Throws.InstanceOf<ArgumentOutOfRangeException>());

    [TestCase(1)]
    [TestCase(65535)]
    public void PortRangeEndsAreAccepted(int port) =>
        Assert.That(RedirectRules.For(port)[6].AddCommandLine, Does.EndWith($"127.0.0.1:{port}"));

    [Test]
    public void DefaultProxyListenGivesTheDefaultRules() =>
        Assert.That(
            RedirectRules.For([IPEndPoint.Parse("127.0.0.1:4444"), IPEndPoint.Parse("[::1]:4444")], DefaultDns).Select(r => r.AddCommandLine),
            Is.EqualTo(DefaultAddLines));

    [Test]
    public void EachFamilyRedirectsToItsOwnListenPort()
    {
        var rules = RedirectRules.For([IPEndPoint.Parse("[::1]:6666"), IPEndPoint.Parse("127.0.0.1:5555")], DefaultDns);

        Assert.That(rules.Select(r => r.AddCommandLine), Is.EqualTo(DefaultAddLines
            .Select(line => line.Replace("127.0.0.1:4444", "127.0.0.1:5555", StringComparison.Ordinal).Replace("[::1]:4444", "[::1]:6666", StringComparison.Ordinal))));
        Assert.That(rules[6].AddCommandLine, Does.EndWith("--to-destination 127.0.0.1:5555"));
        Assert.That(rules[12].AddCommandLine, Does.EndWith("--to-destination [::1]:6666"));
    }

    [Test]
    public void AFamilyWithoutAListenerIsStillRedirectedToAPortWhereTheProxyDoesNotListen()
    {
        // Fail closed: without its rules, that family's TCP would leave wherever a route leads, around the proxy.
        var ipv4Only = RedirectRules.For([IPEndPoint.Parse("127.0.0.1:4444")], DefaultDns);
        var ipv6Only = RedirectRules.For([IPEndPoint.Parse("[::1]:5555")], DefaultDns);

        Assert.Multiple(() =>
        {
            Assert.That(ipv4Only.Select(r => r.AddCommandLine), Is.EqualTo(DefaultAddLines));
            Assert.That(ipv4Only[12].Description, Does.Contain("does not listen"));
            Assert.That(ipv4Only[6].Description, Does.Not.Contain("does not listen"));
            Assert.That(ipv6Only.Select(r => r.AddCommandLine), Has.Some.EndWith("--to-destination 127.0.0.1:5555"));
            Assert.That(ipv6Only.Select(r => r.AddCommandLine), Has.Some.EndWith("--to-destination [::1]:5555"));
            Assert.That(ipv6Only.Count, Is.EqualTo(15));
        });
    }

    [Test]
    public void WildcardListenersAreReachedOnLoopback() =>
        Assert.That(
            RedirectRules.Targets([IPEndPoint.Parse("0.0.0.0:4000"), IPEndPoint.Parse("[::]:4001")]),
            Is.EqualTo(new[] { IPEndPoint.Parse("127.0.0.1:4000"), IPEndPoint.Parse("[::1]:4001") }));

    [Test]
    public void OtherLoopbackAddressesAreKept() =>
        Assert.That(RedirectRules.For([IPEndPoint.Parse("127.0.0.2:4444")], DefaultDns).Select(r => r.AddCommandLine), Has.Some.EndWith("--to-destination 127.0.0.2:4444"));

    [Test]
    public void TheFirstLoopbackListenerOfAFamilyIsTheTarget() =>
        Assert.That(
            RedirectRules.Targets([IPEndPoint.Parse("10.0.0.5:4444"), IPEndPoint.Parse("[::1]:7000"), IPEndPoint.Parse("127.0.0.1:5000"), IPEndPoint.Parse("127.0.0.1:5001")]),
            Is.EqualTo(new[] { IPEndPoint.Parse("127.0.0.1:5000"), IPEndPoint.Parse("[::1]:7000") }));

    [Test]
    public void AFamilyListeningOnlyOffLoopbackIsRefusedWithAWayOut()
    {
        Assert.That(
            () => RedirectRules.For([IPEndPoint.Parse("10.0.0.5:4444"), IPEndPoint.Parse("[::1]:4444")], DefaultDns),
            Throws.InstanceOf<UnreachableListenerException>().With.Property(nameof(UnreachableListenerException.Index)).EqualTo(0).And.Message.StartsWith(
                "The proxy's IPv4 listen address (10.0.0.5:4444) cannot take redirected connections: they travel over lo, so the proxy must also listen on a loopback address, such as 127.0.0.1:4444."));
        Assert.That(
            () => RedirectRules.Targets([IPEndPoint.Parse("127.0.0.1:4444"), IPEndPoint.Parse("[2001:db8::1]:4444"), IPEndPoint.Parse("[2001:db8::2]:4444")]),
            Throws.InstanceOf<UnreachableListenerException>().With.Property(nameof(UnreachableListenerException.Index)).EqualTo(1)
                .And.Message.StartsWith("The proxy's IPv6 listen addresses ([2001:db8::1]:4444, [2001:db8::2]:4444) cannot take redirected connections")
                .And.Message.Contains("such as [::1]:4444."));
    }

    [Test]
    public void NoListenerAtAllIsRefused()
    {
        Assert.That(() => RedirectRules.For([], DefaultDns), Throws.ArgumentException.With.Message.StartsWith("The proxy listens nowhere"));
        Assert.That(() => RedirectRules.For([IPEndPoint.Parse("127.0.0.1:4444")], []), Throws.ArgumentException.With.Message.StartsWith("The DNS forwarder listens nowhere"));
    }

    [Test]
    public void AFamilyWithoutADnsListenerHasItsDnsRedirectedWhereNothingListens()
    {
        // Fail closed: without the rules, that family's DNS to another resolver would leave around the name policy.
        var rules = RedirectRules.For([IPEndPoint.Parse("127.0.0.1:4444"), IPEndPoint.Parse("[::1]:4444")], [IPEndPoint.Parse("127.0.0.1:5353")]);

        Assert.Multiple(() =>
        {
            Assert.That(rules[9].AddCommandLine, Does.EndWith("--to-destination [::1]:5353"));
            Assert.That(rules[9].Description, Does.Contain("does not listen"));
            Assert.That(rules[4].Description, Does.Not.Contain("does not listen"));
        });
    }

    [Test]
    public void AnOffLoopbackDnsListenerIsRefusedNamingTheForwarder() =>
        Assert.That(
            () => RedirectRules.For([IPEndPoint.Parse("127.0.0.1:4444")], [IPEndPoint.Parse("10.0.0.5:53")]),
            Throws.InstanceOf<UnreachableListenerException>().With.Message.StartsWith("The DNS forwarder's IPv4 listen address (10.0.0.5:53) cannot take redirected connections"));
}
