using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// A new user's trial: egress-enclave started on a development machine (interfaces besides lo) said nothing, while
/// <c>rules --apply</c> refuses there. It now warns once at start that the namespace is not enclave-shaped; in an
/// lo-only namespace (an enclave's shape) it does not.
/// </summary>
[TestFixture]
public sealed class EnclaveNamespaceWarningTests
{
    private const string Warning = "this network namespace has interfaces other than lo";

    [OneTimeSetUp]
    public void RequireRoot() => Root.RequireOrIgnore();

    [Test]
    public async Task AStartBesideAnotherInterfaceWarnsAndAnLoOnlyStartDoesNot()
    {
        await using var topology = await Topology.CreateAsync();
        string config = Path.Combine(topology.WorkDirectory, "enclave.toml");
        await File.WriteAllTextAsync(config, EnclaveConfig.Render(EnclaveConfig.DefaultDestinations));
        string tunnel = $"unix:{Path.Combine(topology.WorkDirectory, "none.sock")}";

        string loOnly = await StartedLogAsync(topology, "lo only", config, tunnel);
        await Command.RunCheckedAsync("ip", "-n", topology.Enclave, "link", "add", "eg-veth0", "type", "veth", "peer", "name", "eg-veth1");
        string withDummy = await StartedLogAsync(topology, "with a veth pair", config, tunnel);

        Assert.Multiple(() =>
        {
            Assert.That(loOnly, Does.Not.Contain(Warning), loOnly);
            Assert.That(withDummy, Does.Contain($"warn: Egress.Enclave[5] {Warning} (eg-veth0, eg-veth1); a Nitro enclave has none."), withDummy);
        });
    }

    /// <summary>Starts egress-enclave in the enclave namespace, waits for its DNS forwarder's listening line (written
    /// after the start lines), and returns its log so far; the process is stopped when the topology is disposed.</summary>
    private static async Task<string> StartedLogAsync(Topology topology, string name, string config, string tunnel)
    {
        var enclave = topology.StartProcess($"egress-enclave ({name})", topology.Enclave, HostBinaries.Enclave("--config", config, "--tunnel", tunnel));
        string? listening = await enclave.WaitForLineAsync(line => line.Contains("dns forwarder listening", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        Assert.That(listening, Is.Not.Null, enclave.ToString);
        await enclave.DisposeAsync();
        return enclave.Output;
    }
}
