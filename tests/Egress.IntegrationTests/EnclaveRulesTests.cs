using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// `egress-enclave rules` against the real kernel, each test in a fresh enclave namespace, with the proxy endpoints
/// and the netfilter backend from the configuration. Needs the enclave host.
/// </summary>
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
        var config = await WriteConfigAsync(topology, string.Empty);

        var apply = await Command.RunInNamespaceAsync(topology.Enclave, RulesTimeout, HostBinaries.Enclave("rules", "--apply", "--config", config));
        Assert.That(apply.ExitCode, Is.Zero, apply.ToString);
        var applied = await EnclaveStateAsync(topology.Enclave);
        Assert.Multiple(() =>
        {
            Assert.That(applied.Nat, Does.Contain("-A OUTPUT ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 127.0.0.1:4444"));
            Assert.That(applied.Nat, Does.Contain("-A POSTROUTING -s 0.0.0.0/32 -o lo -j SNAT --to-source 127.0.0.1"));
            Assert.That(applied.Nat6, Does.Contain("-A OUTPUT ! -d ::1/128 -p tcp -j DNAT --to-destination [::1]:4444"));
            Assert.That(applied.Routes, Does.Contain("default via 127.0.0.1 dev lo src 127.0.0.1"));
            Assert.That(applied.Routes6, Has.Some.StartsWith("default dev lo"));
        });

        var remove = await Command.RunInNamespaceAsync(topology.Enclave, RulesTimeout, HostBinaries.Enclave("rules", "--remove", "--config", config));
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
    public async Task ApplyTakesTheProxyPortsFromTheConfiguration()
    {
        await using var topology = await Topology.CreateAsync();
        var config = await WriteConfigAsync(topology, "[enclave]\nproxy_listen = [\"127.0.0.1:5555\", \"[::1]:5556\"]\n");

        var apply = await Command.RunInNamespaceAsync(topology.Enclave, RulesTimeout, HostBinaries.Enclave("rules", "--apply", "--config", config));
        Assert.That(apply.ExitCode, Is.Zero, apply.ToString);
        var applied = await EnclaveStateAsync(topology.Enclave);
        Assert.Multiple(() =>
        {
            Assert.That(applied.Nat, Does.Contain("-A OUTPUT ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 127.0.0.1:5555"));
            Assert.That(applied.Nat6, Does.Contain("-A OUTPUT ! -d ::1/128 -p tcp -j DNAT --to-destination [::1]:5556"));
            Assert.That(string.Join('\n', applied.Nat.Concat(applied.Nat6)), Does.Not.Contain(":4444"));
            Assert.That(apply.StandardOutput, Does.Contain("proxy: 127.0.0.1:5555 ").And.Contain("proxy: [::1]:5556 "));
        });
    }

    [Test]
    public async Task WithTheLegacyBackendTheRulesLiveInTheLegacyTablesAndConnectionsGoThroughTheProxy()
    {
        await using var topology = await Topology.CreateAsync();
        await topology.StartWorldServicesAsync();
        var toml = EnclaveConfig.Render(EnclaveConfig.DefaultDestinations) + "\n[enclave]\nnetfilter = \"legacy\"\n";
        var deployment = await EgressDeployment.StartAsync(topology, toml);

        var whoami = await Clients.CurlAsync(topology.Enclave, "http://198.18.0.10/whoami");
        var whoami6 = await Clients.CurlAsync(topology.Enclave, "http://[2001:db8::10]/whoami", "-g");
        var legacy = Lines(await Command.RunCheckedAsync("ip", "netns", "exec", topology.Enclave, "iptables-legacy", "-t", "nat", "-S"));
        var legacy6 = Lines(await Command.RunCheckedAsync("ip", "netns", "exec", topology.Enclave, "ip6tables-legacy", "-t", "nat", "-S"));
        var nft = Lines(await Command.RunCheckedAsync("ip", "netns", "exec", topology.Enclave, "iptables-nft", "-t", "nat", "-S"));
        var nft6 = Lines(await Command.RunCheckedAsync("ip", "netns", "exec", topology.Enclave, "ip6tables-nft", "-t", "nat", "-S"));
        var logged = await EgressFixture.LogLineAsync(deployment.Enclave, "198.18.0.10:80");
        Assert.Multiple(() =>
        {
            Assert.That(whoami.StandardOutput, Is.EqualTo("198.18.0.10 80\n"), whoami.ToString);
            Assert.That(whoami6.StandardOutput, Is.EqualTo("2001:db8::10 80\n"), whoami6.ToString);
            Assert.That(legacy, Does.Contain("-A OUTPUT ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 127.0.0.1:4444"));
            Assert.That(legacy6, Does.Contain("-A OUTPUT ! -d ::1/128 -p tcp -j DNAT --to-destination [::1]:4444"));
            Assert.That(nft.Concat(nft6).Where(rule => rule.StartsWith("-A ", StringComparison.Ordinal)), Is.Empty, "nothing in nf_tables");
            Assert.That(logged, Is.Not.Null, () => $"egress-enclave did not log the connection:\n{deployment.Enclave.Output}");
        });
    }

    [Test]
    public async Task RulesWithoutAnOptionPrintsThemAndChangesNothing()
    {
        await using var topology = await Topology.CreateAsync();

        var config = await WriteConfigAsync(topology, string.Empty);

        var print = await Command.RunInNamespaceAsync(topology.Enclave, RulesTimeout, HostBinaries.Enclave("rules", "--config", config));
        var state = await EnclaveStateAsync(topology.Enclave);
        Assert.Multiple(() =>
        {
            Assert.That(print.ExitCode, Is.Zero, print.ToString);
            Assert.That(print.StandardOutput, Does.Contain("127.0.0.1:4444").And.Contain("DNAT").And.Contain("SNAT"));
            Assert.That(state.Nat.Where(rule => rule.StartsWith("-A ", StringComparison.Ordinal)), Is.Empty);
            Assert.That(state.Routes, Is.Empty);
        });
    }

    private static async Task<string> WriteConfigAsync(Topology topology, string toml)
    {
        var path = Path.Combine(topology.WorkDirectory, "rules.toml");
        await File.WriteAllTextAsync(path, toml);
        return path;
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
