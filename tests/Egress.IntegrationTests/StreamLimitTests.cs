using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// <c>[host] max_streams = 1</c> for real: while an unmodified nc holds one relayed connection, curl's connection is
/// refused by the parent with a reason that both hosts log, and once nc is done the next connection is served.
/// </summary>
[TestFixture]
public sealed class StreamLimitTests
{
    private Topology? topology;
    private EgressDeployment? deployment;

    [OneTimeSetUp]
    public async Task Deploy()
    {
        Root.RequireOrIgnore();
        topology = await Topology.CreateAsync();
        await topology.StartWorldServicesAsync();
        string toml = EnclaveConfig.Render(EnclaveConfig.DefaultDestinations).Replace("[host]\n", "[host]\nmax_streams = 1\n", StringComparison.Ordinal);
        deployment = await EgressDeployment.StartAsync(topology, toml);
    }

    [OneTimeTearDown]
    public async Task TearDown()
    {
        if (topology is not null)
        {
            await topology.DisposeAsync();
        }
    }

    [Test]
    public async Task AConnectionBeyondTheParentsStreamLimitIsRefusedWithTheReasonAndServedOnceAPlaceIsFree()
    {
        var enclave = topology!.Enclave;
        var held = Clients.ShellAsync(enclave, $"sleep 4 | nc -N -w 10 198.18.1.20 {WorldPorts.Echo}");
        var connected = await deployment!.Host.WaitForLineAsync(line => line.Contains("198.18.1.20:7", StringComparison.Ordinal) && line.Contains("connected", StringComparison.Ordinal), TimeSpan.FromSeconds(10));
        Assert.That(connected, Is.Not.Null, () => $"nc's connection was not relayed:\n{deployment.Host.Output}");

        var refused = await Clients.CurlAsync(enclave, "http://198.18.0.10/");
        var hostLine = await EgressFixture.LogLineAsync(deployment.Host, "rejected TcpConnect stream to 198.18.0.10:80", "stream limit reached (host.max_streams = 1)");
        var enclaveLine = await EgressFixture.LogLineAsync(deployment.Enclave, "198.18.0.10:80", "stream limit reached (host.max_streams = 1)");
        Assert.Multiple(() =>
        {
            Assert.That(refused.ExitCode, Is.Not.Zero, () => $"curl got through beyond the limit: {refused}");
            Assert.That(hostLine, Is.Not.Null, () => $"egress-host did not log the refusal:\n{deployment.Host.Output}");
            Assert.That(enclaveLine, Is.Not.Null, () => $"egress-enclave did not log the parent's reason:\n{deployment.Enclave.Output}");
        });

        var nc = await held;
        Assert.That(nc.ExitCode, Is.Zero, () => $"the held connection failed: {nc}");
        // The held stream's place is released just after its relay ends; a request in between is still refused.
        CommandResult served = refused;
        for (var attempt = 0; attempt < 10 && served.ExitCode != 0; attempt++)
        {
            served = await Clients.CurlAsync(enclave, "http://198.18.0.10/");
        }

        Assert.That(served.ExitCode, Is.Zero, () => $"not served after the held connection closed: {served}\n{deployment.Host.Output}");
    }
}
