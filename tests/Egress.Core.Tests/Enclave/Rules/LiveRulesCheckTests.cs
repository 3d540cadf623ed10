using System.Net;
using Egress.Configuration;
using Egress.Enclave.Rules;
using Microsoft.Extensions.Logging;

namespace Egress.Tests.Enclave.Rules;

/// <summary>
/// <see cref="LiveRulesCheck"/> against a <see cref="FakeSystem"/> whose tables <see cref="RulesCommand"/> filled: a
/// trial started egress-enclave on port 5555 where the rules sent TCP to 4444, and nothing said so. The start now reads
/// nat OUTPUT and warns (event 10) where it does not send TCP or DNS to this configuration's targets; where it cannot
/// read the chain it says so (event 19) and never throws.
/// </summary>
public sealed class LiveRulesCheckTests
{
    private const string Config = "/etc/egress/enclave.toml";

    private const string Unread = ", and no redirect elsewhere comes before them (rules that end the chain without one, RETURN or ACCEPT, are not read)";

    private static readonly IPEndPoint[] Port4444 = [IPEndPoint.Parse("127.0.0.1:4444"), IPEndPoint.Parse("[::1]:4444")];

    private static readonly IPEndPoint[] Port5555 = [IPEndPoint.Parse("127.0.0.1:5555"), IPEndPoint.Parse("[::1]:5555")];

    private FakeSystem _system = null!;
    private LogCapture _log = null!;

    [SetUp]
    public void CreateSystem()
    {
        _system = new FakeSystem();
        _log = new LogCapture();
    }

    [TearDown]
    public void DisposeLog() => _log.Dispose();

    [Test]
    public void RulesAppliedForThisConfigurationGiveNoWarningAndOneListingPerFamily()
    {
        Apply(Port4444);

        Check(Port4444);

        Assert.Multiple(() =>
        {
            Assert.That(_log.Lines, Is.EqualTo(new[]
            {
                "Debug: redirect rules match this configuration: nat OUTPUT (iptables-nft, ip6tables-nft) redirects TCP to 127.0.0.1:4444, [::1]:4444 (proxy_listen) and DNS to 127.0.0.1:53, [::1]:53 (dns_listen)" + Unread,
            }));
            Assert.That(_system.Calls, Is.EqualTo(new[] { "iptables-nft -w -t nat -S OUTPUT", "ip6tables-nft -w -t nat -S OUTPUT" }), "the probe's listing is the IPv4 one");
        });
    }

    [Test]
    public void RulesForAnotherPortGiveTheWarningWithWhatWasFoundWhatIsNeededAndTheFix()
    {
        Apply(Port4444);

        Check(Port5555);

        Assert.That(_log.Lines, Is.EqualTo(new[]
        {
            "Warning: redirect rules do not match this configuration: nat OUTPUT (iptables-nft, ip6tables-nft) redirects TCP to 127.0.0.1:4444, [::1]:4444 and DNS to 127.0.0.1:53, [::1]:53; "
                + $"{Config} needs TCP to 127.0.0.1:5555, [::1]:5555 (proxy_listen) and DNS to 127.0.0.1:53, [::1]:53 (dns_listen). "
                + "Outbound TCP connections are not reaching egress-enclave until the rules are replaced: "
                + $"egress-enclave rules --remove --config OLD (OLD: the file they were applied with), then egress-enclave rules --apply --config {Config}",
        }));
        Assert.That(_log.EventIds, Is.EqualTo(new[] { 10 }));
    }

    [Test]
    public void NoRulesGiveTheWarningWithTheApplyCommand()
    {
        Check(Port5555);

        Assert.That(_log.Lines, Is.EqualTo(new[]
        {
            "Warning: redirect rules do not match this configuration: nat OUTPUT (iptables-nft, ip6tables-nft) holds no redirect; "
                + $"{Config} needs TCP to 127.0.0.1:5555, [::1]:5555 (proxy_listen) and DNS to 127.0.0.1:53, [::1]:53 (dns_listen). "
                + $"Outbound TCP connections and DNS queries are not reaching egress-enclave until the rules are applied: egress-enclave rules --apply --config {Config}",
        }));
        Assert.That(_system.LegacyNatInUse, Is.False, "no legacy nat table was created to look");
    }

    /// <summary>The Nitro enclave kernel: no nf_tables; the rules are in the legacy tables.</summary>
    [Test]
    public void WithoutNfTablesTheLegacyTablesAreReadAndMatch()
    {
        _system.Broken[NetfilterBackend.Nft] = FakeSystem.NoNfTables;
        Apply(Port4444);

        Check(Port4444);

        Assert.That(_log.EventIds, Is.EqualTo(new[] { 20 }), string.Join('\n', _log.Lines));
        Assert.That(_log.Lines[0], Does.Contain("nat OUTPUT (iptables-legacy, ip6tables-legacy) redirects"));
    }

    /// <summary>Old rules still in front of this configuration's (added by hand: rules --apply refuses then).</summary>
    [Test]
    public void RulesOfThisConfigurationBehindOthersGiveTheWarning()
    {
        Apply(Port4444);
        foreach (var rule in RedirectRules.For(Port5555, Dns).Where(r => r.Program != "ip").Select(r => r with { Program = r.Program + "-nft" }))
        {
            Assert.That(_system.Run(rule.Program, rule.Add).ExitCode, Is.Zero);
        }

        Check(Port5555);

        Assert.That(_log.EventIds, Is.EqualTo(new[] { 10 }));
        Assert.That(_log.Lines[0], Does.Contain("redirects TCP to 127.0.0.1:4444, 127.0.0.1:5555, [::1]:4444, [::1]:5555 and DNS to 127.0.0.1:53, [::1]:53;"));
        Assert.That(_log.Lines[0], Does.Contain("Outbound TCP connections are not reaching egress-enclave until the rules are replaced: egress-enclave rules --remove --config OLD"));
    }

    /// <summary>A review: hand-written REDIRECT rules to the proxy's port (the kernel sends a local packet it redirects to
    /// loopback) were read as no redirect at all, and warned about; a REDIRECT elsewhere is still one.</summary>
    [Test]
    public void HandWrittenRedirectRulesToThisPortMatchAndElsewhereDoNot()
    {
        string[][] rules =
        [
            ["iptables-nft", "-p", "tcp", "!", "-d", "127.0.0.0/8", "-j", "REDIRECT", "--to-ports", "5555"],
            ["ip6tables-nft", "-p", "tcp", "!", "-d", "::1/128", "-j", "REDIRECT", "--to-ports", "5555"],
            ["iptables-nft", "-p", "udp", "--dport", "53", "-j", "REDIRECT", "--to-ports", "53"],
            ["ip6tables-nft", "-p", "udp", "--dport", "53", "-j", "REDIRECT", "--to-ports", "53"],
        ];
        foreach (string[] rule in rules)
        {
            Assert.That(_system.Run(rule[0], ["-w", "-t", "nat", "-A", "OUTPUT", .. rule[1..]]).ExitCode, Is.Zero);
        }

        Check(Port5555);
        Check(Port4444);

        Assert.That(_log.EventIds, Is.EqualTo(new[] { 20, 10 }), string.Join('\n', _log.Lines));
        Assert.That(_log.Lines[1], Does.Contain("redirects TCP to 127.0.0.1:5555, [::1]:5555 and DNS to 127.0.0.1:53, [::1]:53;"));
    }

    /// <summary>Old rules behind this configuration's never match: the traffic arrives, so no warning.</summary>
    [Test]
    public void OtherRulesBehindThisConfigurationsGiveNoWarning()
    {
        Apply(Port5555);
        Assert.That(_system.Run("iptables-nft", ["-w", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "!", "-d", "127.0.0.0/8", "-j", "DNAT", "--to-destination", "127.0.0.1:4444"]).ExitCode, Is.Zero);

        Check(Port5555);

        Assert.That(_log.EventIds, Is.EqualTo(new[] { 20 }), string.Join('\n', _log.Lines));
    }

    [Test]
    public void OnlyTheFamilyThatDiffersIsNamed()
    {
        Apply([IPEndPoint.Parse("127.0.0.1:5555"), IPEndPoint.Parse("[::1]:4444")]);

        Check(Port5555);

        Assert.That(_log.EventIds, Is.EqualTo(new[] { 10 }));
        Assert.That(_log.Lines[0], Does.Contain(". Outbound IPv6 TCP connections are not reaching egress-enclave until the rules are replaced:"));
    }

    [Test]
    public void WhereIPv6IsDisabledOnlyIPv4IsReadAndNeeded()
    {
        Apply(Port4444, ipv6: false);

        Check(Port4444, ipv6: false);

        Assert.That(_log.Lines, Is.EqualTo(new[]
        {
            "Debug: redirect rules match this configuration: nat OUTPUT (iptables-nft) redirects TCP to 127.0.0.1:4444 (proxy_listen) and DNS to 127.0.0.1:53 (dns_listen)" + Unread,
        }));
    }

    [Test]
    public void WithoutIptablesItSaysItCouldNotCheckAndWhy()
    {
        _system.Programs.RemoveWhere(p => p.Contains("tables", StringComparison.Ordinal));

        Check(Port4444);

        Assert.That(_log.EventIds, Is.EqualTo(new[] { 19 }));
        Assert.That(_log.Lines[0], Does.StartWith("Information: redirect rules not checked: no netfilter backend works here: neither iptables-nft nor iptables found"));
        Assert.That(_log.Lines[0], Does.EndWith($"Connections reach egress-enclave only where nat OUTPUT redirects TCP to 127.0.0.1:4444, [::1]:4444 (proxy_listen) and DNS to 127.0.0.1:53, [::1]:53 (dns_listen) (egress-enclave rules --config {Config} prints the rules)"));
        Assert.That(_system.Calls, Is.Empty);
    }

    [Test]
    public void WhereIptablesFailsItSaysItCouldNotCheckAndWhy()
    {
        _system.Broken[NetfilterBackend.Nft] = FakeSystem.NoNfTables;
        _system.Broken[NetfilterBackend.Legacy] = FakeSystem.NoLegacyNat;

        Check(Port4444);

        Assert.That(_log.EventIds, Is.EqualTo(new[] { 19 }));
        Assert.That(_log.Lines[0], Does.StartWith($"Information: redirect rules not checked: no netfilter backend works here: iptables-nft failed: {FakeSystem.NoNfTables}; iptables-legacy failed: {FakeSystem.NoLegacyNat}."));
    }

    [Test]
    public void WhereOneFamilyCannotBeListedTheOtherIsStillChecked()
    {
        Check(Port4444, runner: new FailingRunner(_system, "ip6tables-nft"));

        Assert.That(_log.EventIds, Is.EqualTo(new[] { 19, 10 }));
        Assert.That(_log.Lines[0], Does.StartWith("Information: redirect rules not checked: 'ip6tables-nft -w -t nat -S OUTPUT' failed (exit 3): ip6tables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied"));
        Assert.That(_log.Lines[1], Does.Contain("nat OUTPUT (iptables-nft) holds no redirect; /etc/egress/enclave.toml needs TCP to 127.0.0.1:4444 (proxy_listen) and DNS to 127.0.0.1:53 (dns_listen). Outbound IPv4 TCP connections and IPv4 DNS queries are not reaching"));
    }

    [Test]
    public void WithoutRootNothingIsRunAndItSaysWhy()
    {
        Check(Port4444, privileged: false);

        Assert.That(_log.Lines, Has.Count.EqualTo(1));
        Assert.That(_log.Lines[0], Does.StartWith("Information: redirect rules not checked: reading nat OUTPUT needs root, as rules --apply does. "));
        Assert.That(_system.Calls, Is.Empty);
    }

    [Test]
    public void ACommandThatThrowsIsALineNotAnException()
    {
        Assert.DoesNotThrow(() => Check(Port4444, runner: new FailingRunner(_system, "iptables-nft", new InvalidOperationException("could not start iptables-nft"))));

        Assert.That(_log.Lines, Has.Count.EqualTo(1));
        Assert.That(_log.Lines[0], Does.StartWith("Information: redirect rules not checked: InvalidOperationException: could not start iptables-nft. Connections reach egress-enclave only where"));
    }

    [Test]
    public void ListenAddressesWithoutRedirectTargetsAreALineNotAnException()
    {
        new LiveRulesCheck(_system, () => Environment(true, true)).Run(null, "enclave.toml:4:17: error: the proxy's IPv4 listen address cannot take redirected connections", Config, _log.Factory.CreateLogger("Egress.Enclave"));

        Assert.That(_log.EventIds, Is.EqualTo(new[] { 19 }));
        Assert.That(_system.Calls, Is.Empty);
    }

    [Test]
    public async Task TheServiceNeitherHoldsUpTheStartNorOutlivesTheStop()
    {
        using var release = new ManualResetEventSlim();
        var service = new LiveRulesCheckService(() => release.Wait(TimeSpan.FromSeconds(30)));

        var started = service.StartAsync(CancellationToken.None);
        Assert.That(started.IsCompleted, Is.True, "the check runs in the background");
        release.Set();
        await service.StopAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5));
    }

    private static readonly IPEndPoint[] Dns = [IPEndPoint.Parse("127.0.0.1:53"), IPEndPoint.Parse("[::1]:53")];

    private static RulesSettings Settings(IPEndPoint[] proxy) => new(proxy, Dns, NetfilterBackend.Auto, "set by [enclave] netfilter");

    private RulesEnvironment Environment(bool privileged, bool ipv6) => new(privileged, [], ipv6, () => _system.LegacyNatInUse, _system);

    private void Apply(IPEndPoint[] proxy, bool ipv6 = true)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        Assert.That(new RulesCommand(output, error, _system, Environment(true, ipv6)).Apply(Settings(proxy), force: false), Is.Zero, error.ToString);
        _system.Calls.Clear();
    }

    private void Check(IPEndPoint[] proxy, bool privileged = true, bool ipv6 = true, ICommandRunner? runner = null) =>
        new LiveRulesCheck(runner ?? _system, () => Environment(privileged, ipv6)).Run(Settings(proxy), null, Config, _log.Factory.CreateLogger("Egress.Enclave"));

    /// <summary>The fake system, except that <paramref name="program"/> fails as an unprivileged ip6tables-nft does, or throws.</summary>
    private sealed class FailingRunner(FakeSystem system, string program, Exception? exception = null) : ICommandRunner
    {
        public bool Exists(string name) => system.Exists(name);

        public ProcessResult Run(string name, IReadOnlyList<string> arguments) =>
            name != program ? system.Run(name, arguments)
            : exception is not null ? throw exception
            : new ProcessResult(3, string.Empty, "ip6tables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n");
    }
}
