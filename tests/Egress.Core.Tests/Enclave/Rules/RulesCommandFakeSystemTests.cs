using System.Net;
using Egress.Configuration;
using Egress.Enclave.Rules;

namespace Egress.Tests.Enclave.Rules;

/// <summary>
/// <see cref="RulesCommand"/> against a <see cref="FakeSystem"/>: which tables the rules land in and are removed from,
/// where they redirect to, and what the command says, including on a kernel without nf_tables (as in a Nitro enclave).
/// </summary>
public sealed class RulesCommandFakeSystemTests
{
    private static readonly IPEndPoint[] DefaultTargets = [IPEndPoint.Parse("127.0.0.1:4444"), IPEndPoint.Parse("[::1]:4444")];

    private static readonly string[] TableV4 =
    [
        "-A OUTPUT -p udp --dport 53 ! -d 127.0.0.1/32 -j DNAT --to-destination 127.0.0.1:53",
        "-A OUTPUT -p tcp --dport 53 ! -d 127.0.0.1/32 -j DNAT --to-destination 127.0.0.1:53",
        "-A OUTPUT -p tcp ! -d 127.0.0.0/8 -j DNAT --to-destination 127.0.0.1:4444",
        "-A POSTROUTING -o lo -s 0.0.0.0/32 -j SNAT --to-source 127.0.0.1",
    ];

    private static readonly string[] TableV6 =
    [
        "-A OUTPUT -p udp --dport 53 ! -d ::1/128 -j DNAT --to-destination [::1]:53",
        "-A OUTPUT -p tcp --dport 53 ! -d ::1/128 -j DNAT --to-destination [::1]:53",
        "-A OUTPUT -p tcp -d fd65:6772:6573::1/128 -j RETURN",
        "-A OUTPUT -p tcp ! -d ::1/128 -j DNAT --to-destination [::1]:4444",
        "-A POSTROUTING -o lo -s ::/128 -j SNAT --to-source ::1",
    ];

    private static readonly string[] FilterV4 = ["-A OUTPUT -p udp -m conntrack --ctstate NEW -m addrtype ! --dst-type LOCAL -j REJECT --reject-with icmp-port-unreachable"];

    private static readonly string[] FilterV6 = ["-A OUTPUT -p udp -m conntrack --ctstate NEW -m addrtype ! --dst-type LOCAL -j REJECT --reject-with icmp6-port-unreachable"];

    private FakeSystem _system = null!;
    private StringWriter _output = null!;
    private StringWriter _error = null!;

    private string[] Output => Lines(_output);

    private string[] Error => Lines(_error);

    [SetUp]
    public void CreateSystem()
    {
        _system = new FakeSystem();
        _output = new StringWriter();
        _error = new StringWriter();
    }

    [TearDown]
    public void DisposeWriters()
    {
        _output.Dispose();
        _error.Dispose();
    }

    [Test]
    public void WithoutNfTablesApplyPutsEveryRuleIntoTheLegacyTables()
    {
        _system.Broken[NetfilterBackend.Nft] = FakeSystem.NoNfTables;

        int exit = Command().Apply(Settings(), force: false);

        Assert.That(exit, Is.Zero, string.Join('\n', Error));
        Assert.That(_system.Table(NetfilterBackend.Legacy, ipv6: false), Is.EqualTo(TableV4));
        Assert.That(_system.Table(NetfilterBackend.Legacy, ipv6: true), Is.EqualTo(TableV6));
        Assert.That(_system.Table(NetfilterBackend.Legacy, ipv6: false, "filter"), Is.EqualTo(FilterV4));
        Assert.That(_system.Table(NetfilterBackend.Legacy, ipv6: true, "filter"), Is.EqualTo(FilterV6));
        Assert.That(_system.Calls.Where(c => c.StartsWith("iptables-nft", StringComparison.Ordinal) || c.StartsWith("ip6tables-nft", StringComparison.Ordinal)),
            Is.EqualTo(new[] { "iptables-nft -w -t nat -S OUTPUT" }), "nft is probed, never written to");
        Assert.That(_system.Routes, Is.EquivalentTo(new[] { "default via 127.0.0.1 dev lo src 127.0.0.1", "-6 default dev lo" }));
        Assert.That(Output, Is.EqualTo(new[]
        {
            $"netfilter: legacy (iptables-nft failed: {FakeSystem.NoNfTables})",
            "added: loopback interface up: ip link set dev lo up",
            "added: IPv4 default route via loopback: ip route replace default via 127.0.0.1 dev lo src 127.0.0.1",
            "added: IPv6 default route via loopback: ip -6 route replace default dev lo",
            "added: an IPv4 address besides 127.0.0.1, for AI_ADDRCONFIG: ip -4 addr replace 127.0.0.2/32 dev lo",
            "added: an IPv6 address besides ::1, for AI_ADDRCONFIG: ip -6 addr replace fd65:6772:6573::1/128 dev lo nodad",
            "added: redirect IPv4 DNS over UDP to any resolver to the DNS forwarder: iptables-legacy -w -t nat -A OUTPUT -p udp --dport 53 ! -d 127.0.0.1/32 -j DNAT --to-destination 127.0.0.1:53",
            "added: redirect IPv4 DNS over TCP to any resolver to the DNS forwarder: iptables-legacy -w -t nat -A OUTPUT -p tcp --dport 53 ! -d 127.0.0.1/32 -j DNAT --to-destination 127.0.0.1:53",
            "added: redirect all other IPv4 TCP not to loopback to the proxy: iptables-legacy -w -t nat -A OUTPUT -p tcp ! -d 127.0.0.0/8 -j DNAT --to-destination 127.0.0.1:4444",
            "added: give redirected IPv4 connections a loopback source: iptables-legacy -w -t nat -A POSTROUTING -o lo -s 0.0.0.0/32 -j SNAT --to-source 127.0.0.1",
            "added: refuse IPv4 UDP to anything but this enclave at once: only DNS is carried: iptables-legacy -w -t filter -A OUTPUT -p udp -m conntrack --ctstate NEW -m addrtype ! --dst-type LOCAL -j REJECT --reject-with icmp-port-unreachable",
            "added: redirect IPv6 DNS over UDP to any resolver to the DNS forwarder: ip6tables-legacy -w -t nat -A OUTPUT -p udp --dport 53 ! -d ::1/128 -j DNAT --to-destination [::1]:53",
            "added: redirect IPv6 DNS over TCP to any resolver to the DNS forwarder: ip6tables-legacy -w -t nat -A OUTPUT -p tcp --dport 53 ! -d ::1/128 -j DNAT --to-destination [::1]:53",
            "added: leave IPv6 TCP to this enclave's own address on lo alone: ip6tables-legacy -w -t nat -A OUTPUT -p tcp -d fd65:6772:6573::1/128 -j RETURN",
            "added: redirect all other IPv6 TCP not to loopback to the proxy: ip6tables-legacy -w -t nat -A OUTPUT -p tcp ! -d ::1/128 -j DNAT --to-destination [::1]:4444",
            "added: give redirected IPv6 connections a loopback source: ip6tables-legacy -w -t nat -A POSTROUTING -o lo -s ::/128 -j SNAT --to-source ::1",
            "added: refuse IPv6 UDP to anything but this enclave at once: only DNS is carried: ip6tables-legacy -w -t filter -A OUTPUT -p udp -m conntrack --ctstate NEW -m addrtype ! --dst-type LOCAL -j REJECT --reject-with icmp6-port-unreachable",
            $"added: {TcpTimestamps.Description}: sysctl -w net.ipv4.tcp_timestamps=2 (was 1)",
            "proxy: 127.0.0.1:4444 (redirected IPv4 TCP goes here: the proxy must listen on it)",
            "proxy: [::1]:4444 (redirected IPv6 TCP goes here: the proxy must listen on it)",
            "dns: 127.0.0.1:53 (redirected IPv4 DNS, UDP and TCP, goes here: the DNS forwarder must listen on it)",
            "dns: [::1]:53 (redirected IPv6 DNS, UDP and TCP, goes here: the DNS forwarder must listen on it)",
        }));
        Assert.That(Error, Is.Empty);
    }

    [Test]
    public void WithoutNfTablesRemoveTakesTheRulesOutOfTheLegacyTables()
    {
        _system.Broken[NetfilterBackend.Nft] = FakeSystem.NoNfTables;
        Assert.That(Command().Apply(Settings(), force: false), Is.Zero);
        _output.GetStringBuilder().Clear();

        int exit = Command().Remove(Settings());

        Assert.That(exit, Is.Zero, string.Join('\n', Error));
        Assert.That(_system.Table(NetfilterBackend.Legacy, ipv6: false), Is.Empty);
        Assert.That(_system.Table(NetfilterBackend.Legacy, ipv6: true), Is.Empty);
        Assert.That(_system.Table(NetfilterBackend.Legacy, ipv6: false, "filter"), Is.Empty);
        Assert.That(_system.Table(NetfilterBackend.Legacy, ipv6: true, "filter"), Is.Empty);
        Assert.That(_system.Routes, Is.Empty);
        Assert.That(_system.Addresses, Is.Empty);
        Assert.That(Output, Is.EqualTo(new[]
        {
            $"netfilter: legacy (iptables-nft failed: {FakeSystem.NoNfTables})",
            "removed: refuse IPv6 UDP to anything but this enclave at once: only DNS is carried (ip6tables-legacy)",
            "removed: give redirected IPv6 connections a loopback source (ip6tables-legacy)",
            "removed: redirect all other IPv6 TCP not to loopback to the proxy (ip6tables-legacy)",
            "removed: leave IPv6 TCP to this enclave's own address on lo alone (ip6tables-legacy)",
            "removed: redirect IPv6 DNS over TCP to any resolver to the DNS forwarder (ip6tables-legacy)",
            "removed: redirect IPv6 DNS over UDP to any resolver to the DNS forwarder (ip6tables-legacy)",
            "removed: refuse IPv4 UDP to anything but this enclave at once: only DNS is carried (iptables-legacy)",
            "removed: give redirected IPv4 connections a loopback source (iptables-legacy)",
            "removed: redirect all other IPv4 TCP not to loopback to the proxy (iptables-legacy)",
            "removed: redirect IPv4 DNS over TCP to any resolver to the DNS forwarder (iptables-legacy)",
            "removed: redirect IPv4 DNS over UDP to any resolver to the DNS forwarder (iptables-legacy)",
            "removed: an IPv6 address besides ::1, for AI_ADDRCONFIG",
            "removed: an IPv4 address besides 127.0.0.1, for AI_ADDRCONFIG",
            "removed: IPv6 default route via loopback",
            "removed: IPv4 default route via loopback",
            $"left: {TcpTimestamps.Description} (harmless without the rules; `sysctl -w net.ipv4.tcp_timestamps=1` restores the kernel default)",
        }));
    }

    [Test]
    public void AutoApplyLeavesRulesInTheLegacyTablesWhereTheyAre()
    {
        Assert.That(Command().Apply(Settings(NetfilterBackend.Legacy), force: false), Is.Zero);
        _output.GetStringBuilder().Clear();

        int exit = Command().Apply(Settings(), force: false);

        Assert.That(exit, Is.Zero, string.Join('\n', Error));
        Assert.That(Output[0], Does.StartWith("netfilter: legacy (both work, but the Egress rules are already in the iptables-legacy tables;"));
        Assert.That(Output, Does.Contain("present: redirect all other IPv4 TCP not to loopback to the proxy (iptables-legacy)"));
        Assert.That(_system.Table(NetfilterBackend.Nft, ipv6: false), Is.Empty);
        Assert.That(_system.Table(NetfilterBackend.Legacy, ipv6: false), Is.EqualTo(TableV4), "not added twice");
    }

    [Test]
    public void AutoApplyWhereBothWorkUsesNfTables()
    {
        int exit = Command().Apply(Settings(), force: false);

        Assert.That(exit, Is.Zero, string.Join('\n', Error));
        Assert.That(_system.Table(NetfilterBackend.Nft, ipv6: false), Is.EqualTo(TableV4));
        Assert.That(_system.Table(NetfilterBackend.Nft, ipv6: true), Is.EqualTo(TableV6));
        Assert.That(_system.Table(NetfilterBackend.Legacy, ipv6: false), Is.Empty);
        Assert.That(Output[0], Is.EqualTo("netfilter: nft (iptables-nft works; no legacy nat table is in use, so no rules are there)"));
        Assert.That(_system.LegacyNatInUse, Is.False, "auto did not create a legacy nat table");
    }

    [Test]
    public void AutoRemoveTakesTheRulesOutOfBothBackends()
    {
        Assert.That(Command().Apply(Settings(NetfilterBackend.Legacy), force: false), Is.Zero);
        Assert.That(Command().Apply(Settings(NetfilterBackend.Nft), force: false), Is.Zero);
        _output.GetStringBuilder().Clear();

        int exit = Command().Remove(Settings());

        Assert.That(exit, Is.Zero, string.Join('\n', Error));
        foreach (var backend in new[] { NetfilterBackend.Nft, NetfilterBackend.Legacy })
        {
            Assert.That(_system.Table(backend, ipv6: false), Is.Empty, backend.ToString());
            Assert.That(_system.Table(backend, ipv6: true), Is.Empty, backend.ToString());
        }

        Assert.That(Output[0], Is.EqualTo("netfilter: nft and legacy (both work; removing from both)"));
        Assert.That(Output, Does.Contain("removed: redirect all other IPv4 TCP not to loopback to the proxy (iptables-nft)")
            .And.Contain("removed: redirect all other IPv4 TCP not to loopback to the proxy (iptables-legacy)"));
    }

    [Test]
    public void ExplicitNftRemoveLeavesTheLegacyTablesAlone()
    {
        Assert.That(Command().Apply(Settings(NetfilterBackend.Legacy), force: false), Is.Zero);

        Assert.That(Command().Remove(Settings(NetfilterBackend.Nft)), Is.Zero);

        Assert.That(_system.Table(NetfilterBackend.Legacy, ipv6: false), Is.EqualTo(TableV4));
    }

    [Test]
    public void TheConfiguredEndpointsAreTheDnatTargets()
    {
        int exit = Command().Apply(Settings(targets: [IPEndPoint.Parse("127.0.0.1:5555"), IPEndPoint.Parse("[::1]:6666")]), force: false);

        Assert.That(exit, Is.Zero, string.Join('\n', Error));
        Assert.That(_system.Table(NetfilterBackend.Nft, ipv6: false)[2], Does.EndWith("--to-destination 127.0.0.1:5555"));
        Assert.That(_system.Table(NetfilterBackend.Nft, ipv6: true)[3], Does.EndWith("--to-destination [::1]:6666"));
        Assert.That(Output.Where(l => l.StartsWith("proxy: ", StringComparison.Ordinal)).Select(l => l.Split(' ')[1]), Is.EqualTo(new[] { "127.0.0.1:5555", "[::1]:6666" }));
    }

    /// <summary>An operator's trial: an apply after the proxy_listen port changed appended the new DNAT rules after the
    /// old ones, which went on matching first, and printed "proxy: 127.0.0.1:5555" where nothing was redirected.</summary>
    [Test]
    public void ApplyAfterTheListenPortChangedRefusesWhileTheOldRedirectsAreInFrontAndChangesNothing()
    {
        Assert.That(Command().Apply(Settings(), force: false), Is.Zero);
        string[] before = [.. _system.Table(NetfilterBackend.Nft, ipv6: false)];
        _output.GetStringBuilder().Clear();

        int exit = Command().Apply(Settings(targets: [IPEndPoint.Parse("127.0.0.1:5555"), IPEndPoint.Parse("[::1]:5555")]), force: false);

        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.EqualTo(1));
            Assert.That(_system.Table(NetfilterBackend.Nft, ipv6: false), Is.EqualTo(before), "nothing added");
            Assert.That(Error, Does.Contain("error: nat OUTPUT (iptables-nft) already redirects elsewhere: '-A OUTPUT -p tcp ! -d 127.0.0.0/8 -j DNAT --to-destination 127.0.0.1:4444'; it would match before this configuration's rules"));
            Assert.That(Error, Does.Contain("error: nat OUTPUT (ip6tables-nft) already redirects elsewhere: '-A OUTPUT -p tcp ! -d ::1/128 -j DNAT --to-destination [::1]:4444'; it would match before this configuration's rules"));
            Assert.That(Error.Last(), Does.Contain("'iptables-nft -w -t nat -D OUTPUT -p tcp ! -d 127.0.0.0/8 -j DNAT --to-destination 127.0.0.1:4444'"));
            Assert.That(Output.Where(l => l.StartsWith("proxy: ", StringComparison.Ordinal)), Is.Empty);
        });

        // The DNS rules, whose targets did not change, are not in the way; once the old proxy rules are gone, the apply goes through.
        Assert.That(Error.Count(l => l.Contains("--dport 53", StringComparison.Ordinal)), Is.Zero);
        Assert.That(Command().Remove(Settings()), Is.Zero);
        Assert.That(Command().Apply(Settings(targets: [IPEndPoint.Parse("127.0.0.1:5555"), IPEndPoint.Parse("[::1]:5555")]), force: false), Is.Zero);
        Assert.That(_system.Table(NetfilterBackend.Nft, ipv6: false).Count(r => r.Contains("DNAT", StringComparison.Ordinal)), Is.EqualTo(3));
    }

    [Test]
    public void AFamilyTheProxyDoesNotListenInIsRedirectedToAClosedPortAndSaysSo()
    {
        int exit = Command().Apply(Settings(targets: [IPEndPoint.Parse("127.0.0.1:4444")]), force: false);

        Assert.That(exit, Is.Zero, string.Join('\n', Error));
        Assert.That(_system.Table(NetfilterBackend.Nft, ipv6: true)[3], Does.EndWith("--to-destination [::1]:4444"));
        Assert.That(_system.Routes, Is.EquivalentTo(new[] { "default via 127.0.0.1 dev lo src 127.0.0.1", "-6 default dev lo" }));
        Assert.That(_system.Addresses, Is.EquivalentTo(new[] { "-4 127.0.0.2/32", "-6 fd65:6772:6573::1/128" }));
        Assert.That(Output, Does.Contain("note: IPv6 proxy ([enclave] proxy_listen has no IPv6 address: IPv6 TCP is redirected all the same, to a loopback port where the proxy does not listen, so it is refused and never leaves around the proxy)"));
        Assert.That(Output.Where(l => l.StartsWith("proxy: ", StringComparison.Ordinal)), Is.EqualTo(new[] { "proxy: 127.0.0.1:4444 (redirected IPv4 TCP goes here: the proxy must listen on it)" }));
    }

    [Test]
    public void WhereIPv6IsDisabledNoIPv6RuleOrProxyLineIsWritten()
    {
        int exit = Command(ipv6: false).Apply(Settings(), force: false);

        Assert.That(exit, Is.Zero, string.Join('\n', Error));
        Assert.That(_system.Table(NetfilterBackend.Nft, ipv6: true), Is.Empty);
        Assert.That(Output, Does.Contain("skipped: redirect all other IPv6 TCP not to loopback to the proxy (ip6tables-nft) (IPv6 is disabled here)"));
        Assert.That(Output.Count(l => l.StartsWith("proxy: ", StringComparison.Ordinal)), Is.EqualTo(1));
        Assert.That(Output.Count(l => l.StartsWith("dns: ", StringComparison.Ordinal)), Is.EqualTo(1));
        Assert.That(_system.Addresses, Is.EqualTo(new[] { "-4 127.0.0.2/32" }));
    }

    [Test]
    public void WithNoWorkingBackendApplyChangesNothing()
    {
        _system.Broken[NetfilterBackend.Nft] = FakeSystem.NoNfTables;
        _system.Broken[NetfilterBackend.Legacy] = FakeSystem.NoLegacyNat;

        int exit = Command().Apply(Settings(), force: false);

        Assert.That(exit, Is.EqualTo(1));
        Assert.That(Error, Has.Length.EqualTo(1));
        Assert.That(Error[0], Does.StartWith("error: no netfilter backend works here:"));
        Assert.That(_system.LoopbackUp, Is.False);
        Assert.That(_system.Routes, Is.Empty);
    }

    [Test]
    public void AFailingStepRollsBackWhatThisRunAdded()
    {
        _system.Programs.Remove("ip6tables-legacy");
        _system.Broken[NetfilterBackend.Nft] = FakeSystem.NoNfTables;

        int exit = Command().Apply(Settings(), force: false);

        Assert.That(exit, Is.EqualTo(1));
        Assert.That(Error[0], Does.StartWith("error: 'ip6tables-legacy -w -t nat -A OUTPUT").And.Contain("(exit 127)"));
        Assert.That(_system.Table(NetfilterBackend.Legacy, ipv6: false), Is.Empty);
        Assert.That(_system.Routes, Is.Empty);
        Assert.That(_system.Addresses, Is.Empty);
        Assert.That(Error, Does.Contain("rolled back: redirect all other IPv4 TCP not to loopback to the proxy (iptables-legacy)"));
    }

    [Test]
    public void PrintWithoutRootShowsThePlainProgramsAndSaysWhy()
    {
        int exit = Command(privileged: false).Print(Settings());

        Assert.That(exit, Is.Zero);
        Assert.That(Output[1], Is.EqualTo("# netfilter: not probed (that needs root); shown with plain iptables/ip6tables. rules --apply uses iptables-nft where nf_tables works, else iptables-legacy"));
        Assert.That(Output, Does.Contain("iptables -w -t nat -A OUTPUT -p tcp ! -d 127.0.0.0/8 -j DNAT --to-destination 127.0.0.1:4444"));
        Assert.That(_system.Calls, Is.Empty, "nothing probed or changed");
    }

    [Test]
    public void PrintAsRootWithoutNfTablesShowsTheLegacyCommands()
    {
        _system.Broken[NetfilterBackend.Nft] = FakeSystem.NoNfTables;

        int exit = Command().Print(Settings());

        Assert.That(exit, Is.Zero);
        Assert.That(Output[1], Is.EqualTo($"# netfilter: legacy (iptables-nft failed: {FakeSystem.NoNfTables})"));
        Assert.That(Output, Does.Contain("iptables-legacy -w -t nat -A OUTPUT -p tcp ! -d 127.0.0.0/8 -j DNAT --to-destination 127.0.0.1:4444")
            .And.Contain("ip6tables-legacy -w -t nat -D POSTROUTING -o lo -s ::/128 -j SNAT --to-source ::1"));
        Assert.That(_system.Calls.Where(c => c.Contains(" -A ", StringComparison.Ordinal) || c.Contains(" replace ", StringComparison.Ordinal)), Is.Empty, "printing changes nothing");
    }

    // A new user's trial: rules --netfilter legacy (print only) created the legacy nat table by probing it.
    [Test]
    public void PrintAsRootWithLegacyNamedShowsTheLegacyCommandsWithoutCreatingTheLegacyNatTable()
    {
        int exit = Command().Print(Settings(NetfilterBackend.Legacy));

        Assert.That(exit, Is.Zero, string.Join('\n', Error));
        Assert.That(Output[1], Is.EqualTo("# netfilter: legacy (set by --netfilter; not probed, that would create the legacy nat table)"));
        Assert.That(Output, Does.Contain("iptables-legacy -w -t nat -A OUTPUT -p tcp ! -d 127.0.0.0/8 -j DNAT --to-destination 127.0.0.1:4444"));
        Assert.That(_system.Calls, Has.None.Contains("legacy"));
        Assert.That(_system.LegacyNatInUse, Is.False, "printing created no legacy nat table");
    }

    [Test]
    public void RemoveWithLegacyNamedWhereNoLegacyNatTableIsInUseRemovesTheRoutesAndCreatesNoTable()
    {
        Assert.That(Command().Apply(Settings(NetfilterBackend.Nft), force: false), Is.Zero);
        _output.GetStringBuilder().Clear();

        int exit = Command().Remove(Settings(NetfilterBackend.Legacy));

        Assert.That(exit, Is.Zero, string.Join('\n', Error));
        Assert.That(Output[0], Is.EqualTo("netfilter: legacy (set by --netfilter; no legacy nat table is in use, so no rules are there)"));
        Assert.That(_system.Routes, Is.Empty);
        Assert.That(_system.Addresses, Is.Empty);
        Assert.That(_system.Table(NetfilterBackend.Nft, ipv6: false), Is.EqualTo(TableV4), "the nft rules are not legacy's to remove");
        Assert.That(_system.LegacyNatInUse, Is.False);
    }

    [Test]
    public void ApplySetsTimestampsWithoutOffsetsAndRemoveLeavesThem()
    {
        Assert.That(Command().Apply(Settings(), force: false), Is.Zero, string.Join('\n', Error));
        Assert.That(_system.Sysctls["net.ipv4.tcp_timestamps"], Is.EqualTo("2"));
        Assert.That(Command().Apply(Settings(), force: false), Is.Zero);
        Assert.That(Output, Has.One.EqualTo($"present: {TcpTimestamps.Description}"));

        Assert.That(Command().Remove(Settings()), Is.Zero);
        Assert.That(_system.Sysctls["net.ipv4.tcp_timestamps"], Is.EqualTo("2"), "left: other connections may be in TIME_WAIT");
        Assert.That(Error, Is.Empty);
    }

    // A remove where no apply set the timestamps said "left: ..." of a setting that was the kernel's default all along.
    [TestCase("1")]
    [TestCase("0")]
    public void RemoveNamesTheTimestampsOnlyWhereTheyAreWithoutOffsets(string value)
    {
        _system.Sysctls["net.ipv4.tcp_timestamps"] = value;

        Assert.That(Command().Remove(Settings()), Is.Zero, string.Join('\n', Error));

        Assert.That(Output, Has.None.StartsWith("left: "));
        Assert.That(Output, Has.Some.StartsWith("absent: "), "the remove ran");
        Assert.That(_system.Sysctls["net.ipv4.tcp_timestamps"], Is.EqualTo(value));
    }

    [Test]
    public void RemoveSaysNothingOfTimestampsOnAKernelWithoutTheSetting()
    {
        _system.Sysctls.Clear();

        Assert.That(Command().Remove(Settings()), Is.Zero, string.Join('\n', Error));

        Assert.That(Output, Has.None.Contains("timestamps"));
        Assert.That(Error, Is.Empty);
    }

    [TestCase("0")]
    [TestCase("3")]
    public void ApplyKeepsAnyOtherTimestampsValueAndWarnsWhatItCosts(string value)
    {
        _system.Sysctls["net.ipv4.tcp_timestamps"] = value;

        Assert.That(Command().Apply(Settings(), force: false), Is.Zero);

        Assert.That(_system.Sysctls["net.ipv4.tcp_timestamps"], Is.EqualTo(value));
        Assert.That(Error, Is.EqualTo(new[] { $"warning: net.ipv4.tcp_timestamps is {value}, left as it is; {TcpTimestamps.Consequence}" }));
        Assert.That(Output, Has.Some.StartsWith("proxy: 127.0.0.1:4444"), "the redirect is in place all the same");
    }

    [Test]
    public void ApplyWithoutTheSysctlSaysSoAndSucceeds()
    {
        _system.Sysctls.Clear();

        Assert.That(Command().Apply(Settings(), force: false), Is.Zero);

        Assert.That(Output, Has.One.EqualTo($"skipped: {TcpTimestamps.Description} (this kernel has no net.ipv4.tcp_timestamps)"));
        Assert.That(Error, Is.Empty);
    }

    [Test]
    public void ApplyThatCannotSetTimestampsWarnsAndKeepsTheRules()
    {
        _system.SysctlWriteFailure = new UnauthorizedAccessException("Access to the path '/proc/sys/net/ipv4/tcp_timestamps' is denied.");

        Assert.That(Command().Apply(Settings(), force: false), Is.Zero);

        Assert.That(Error, Is.EqualTo(new[] { $"warning: could not set net.ipv4.tcp_timestamps=2 (Access to the path '/proc/sys/net/ipv4/tcp_timestamps' is denied.); {TcpTimestamps.Consequence}" }));
        Assert.That(_system.Table(NetfilterBackend.Nft, ipv6: false), Has.Count.EqualTo(4));
    }

    [Test]
    public void ApplyRefusesWhereOtherInterfacesExistUnlessForced()
    {
        var command = new RulesCommand(_output, _error, _system, new RulesEnvironment(true, ["eth0"], true, () => _system.LegacyNatInUse, _system));

        Assert.That(command.Apply(Settings(), force: false), Is.EqualTo(1));
        Assert.That(_system.Calls, Is.Empty);
        Assert.That(command.Apply(Settings(), force: true), Is.Zero);
    }

    private static RulesSettings Settings(NetfilterBackend netfilter = NetfilterBackend.Auto, IPEndPoint[]? targets = null) =>
        new(targets ?? DefaultTargets, [new IPEndPoint(IPAddress.Loopback, 53), new IPEndPoint(IPAddress.IPv6Loopback, 53)], netfilter, "set by --netfilter");

    private static string[] Lines(StringWriter writer) =>
        writer.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);

    private RulesCommand Command(bool privileged = true, bool ipv6 = true) =>
        new(_output, _error, _system, new RulesEnvironment(privileged, [], ipv6, () => _system.LegacyNatInUse, _system));
}
