using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>`egress-enclave rules` against the real kernel, each test in a fresh enclave namespace. Needs the enclave host.</summary>
[TestFixture]
public sealed class EnclaveRulesTests
{
    private static readonly TimeSpan RulesTimeout = TimeSpan.FromSeconds(15);

    [OneTimeSetUp]
    public void RequireRoot() => Root.RequireOrIgnore();

    [Test]
    public async Task ApplyInstallsTheRoutesAndRedirectRulesThenRemoveTakesThemAway()
    {
        await using var topology = await Topology.CreateAsync();

        var apply = await Command.RunInNamespaceAsync(topology.Enclave, RulesTimeout, HostBinaries.Enclave("rules", "--apply"));
        Assert.That(apply.ExitCode, Is.Zero, apply.ToString);
        var applied = await EnclaveStateAsync(topology.Enclave);
        Assert.Multiple(() =>
        {
            Assert.That(applied.Nat, Does.Contain("-A OUTPUT ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 127.0.0.1:4444"));
            Assert.That(applied.Nat, Does.Contain("-A POSTROUTING -s 0.0.0.0/32 -o lo -j SNAT --to-source 127.0.0.1"));
            Assert.That(applied.Nat6, Does.Contain("-A OUTPUT ! -d ::1/128 -p tcp -j DNAT --to-destination [::1]:4444"));
            Assert.That(applied.Routes, Does.Contain("default via 127.0.0.1 dev lo"));
            Assert.That(applied.Routes6, Has.Some.StartsWith("default dev lo"));
        });

        var remove = await Command.RunInNamespaceAsync(topology.Enclave, RulesTimeout, HostBinaries.Enclave("rules", "--remove"));
        Assert.That(remove.ExitCode, Is.Zero, remove.ToString);
        var removed = await EnclaveStateAsync(topology.Enclave);
        Assert.Multiple(() =>
        {
            Assert.That(removed.Nat.Where(rule => rule.StartsWith("-A ", StringComparison.Ordinal)), Is.Empty);
            Assert.That(removed.Nat6.Where(rule => rule.StartsWith("-A ", StringComparison.Ordinal)), Is.Empty);
            Assert.That(removed.Routes, Has.None.StartsWith("default"));
            Assert.That(removed.Routes6, Has.None.StartsWith("default"));
        });
    }

    [Test]
    public async Task ApplyHonoursTheProxyPort()
    {
        await using var topology = await Topology.CreateAsync();

        var apply = await Command.RunInNamespaceAsync(topology.Enclave, RulesTimeout, HostBinaries.Enclave("rules", "--apply", "--proxy-port", "5555"));
        Assert.That(apply.ExitCode, Is.Zero, apply.ToString);
        var applied = await EnclaveStateAsync(topology.Enclave);
        Assert.Multiple(() =>
        {
            Assert.That(applied.Nat, Does.Contain("-A OUTPUT ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 127.0.0.1:5555"));
            Assert.That(applied.Nat6, Does.Contain("-A OUTPUT ! -d ::1/128 -p tcp -j DNAT --to-destination [::1]:5555"));
            Assert.That(string.Join('\n', applied.Nat.Concat(applied.Nat6)), Does.Not.Contain(":4444"));
        });
    }

    [Test]
    public async Task RulesWithoutAnOptionPrintsThemAndChangesNothing()
    {
        await using var topology = await Topology.CreateAsync();

        var print = await Command.RunInNamespaceAsync(topology.Enclave, RulesTimeout, HostBinaries.Enclave("rules"));
        var state = await EnclaveStateAsync(topology.Enclave);
        Assert.Multiple(() =>
        {
            Assert.That(print.ExitCode, Is.Zero, print.ToString);
            Assert.That(print.StandardOutput, Does.Contain("127.0.0.1:4444").And.Contain("DNAT").And.Contain("SNAT"));
            Assert.That(state.Nat.Where(rule => rule.StartsWith("-A ", StringComparison.Ordinal)), Is.Empty);
            Assert.That(state.Routes, Is.Empty);
        });
    }

    private static async Task<(string[] Nat, string[] Nat6, string[] Routes, string[] Routes6)> EnclaveStateAsync(string enclave)
    {
        var nat = await Command.RunCheckedAsync("ip", "netns", "exec", enclave, "iptables", "-t", "nat", "-S");
        var nat6 = await Command.RunCheckedAsync("ip", "netns", "exec", enclave, "ip6tables", "-t", "nat", "-S");
        var routes = await Command.RunCheckedAsync("ip", "-n", enclave, "route", "show");
        var routes6 = await Command.RunCheckedAsync("ip", "-n", enclave, "-6", "route", "show");
        return (Lines(nat), Lines(nat6), Lines(routes), Lines(routes6));
    }

    private static string[] Lines(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
