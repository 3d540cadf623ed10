using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// One topology, the world servers and both hosts deployed, shared by a fixture's tests. If the hosts are missing
/// or do not come up, every test of the fixture fails with the reason (never skips), except without root.
/// </summary>
public abstract class EgressFixture
{
    private Topology? topology;
    private WorldServices? world;
    private EgressDeployment? deployment;

    internal Topology Topology => topology ?? throw new InvalidOperationException("no topology");

    internal WorldServices World => world ?? throw new InvalidOperationException("no world services");

    internal EgressDeployment Deployment => deployment ?? throw new InvalidOperationException("no deployment");

    [OneTimeSetUp]
    public async Task Deploy()
    {
        Root.RequireOrIgnore();
        topology = await Topology.CreateAsync();
        world = await topology.StartWorldServicesAsync();
        await PrepareAsync(topology);
        deployment = await EgressDeployment.StartAsync(
            topology, ConfigToml, hostOpenFiles: null, enclaveOpenFiles: null, dnsPort: DnsListenPort, enclaveArguments: EnclaveArguments(topology));
    }

    /// <summary>More arguments for egress-enclave, given the topology (its work directory).</summary>
    internal virtual string[] EnclaveArguments(Topology topology) => [];

    /// <summary>The enclave.toml both hosts run with.</summary>
    internal virtual string ConfigToml => EnclaveConfig.Render(EnclaveConfig.DefaultDestinations);

    /// <summary>The port of <see cref="ConfigToml"/>'s <c>dns_listen</c> on 127.0.0.1.</summary>
    internal virtual int DnsListenPort => EgressDeployment.DnsPort;

    /// <summary>Runs after the world services start and before the hosts are deployed (e.g. a DNS upstream).</summary>
    internal virtual Task PrepareAsync(Topology topology) => Task.CompletedTask;

    [OneTimeTearDown]
    public async Task TearDown()
    {
        if (topology is null)
        {
            return;
        }

        if (deployment is not null)
        {
            await TestContext.Progress.WriteLineAsync($"[harness] {GetType().Name} egress-enclave log:\n{deployment.Enclave.Output}\n[harness] egress-host log:\n{deployment.Host.Output}");
        }

        var faults = world?.CSharpServers.SelectMany(server => server.Faults).Select(fault => fault.ToString()).ToList() ?? [];
        await topology.DisposeAsync();
        var namespaces = await ResourceLedger.ListNamespacesAsync();
        Assert.Multiple(() =>
        {
            Assert.That(namespaces, Has.None.AnyOf(topology.Enclave, topology.Parent, topology.World));
            Assert.That(faults, Is.Empty, "world server faults");
        });
    }

    /// <summary>Waits up to 3 s for a log line containing every fragment (logs may trail the client's exit).</summary>
    internal static async Task<string?> LogLineAsync(BackgroundProcess process, params string[] fragments) =>
        await process.WaitForLineAsync(
            line => fragments.All(fragment => line.Contains(fragment, StringComparison.OrdinalIgnoreCase)),
            TimeSpan.FromSeconds(3));
}
