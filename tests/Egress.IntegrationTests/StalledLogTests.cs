using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// Both hosts' stdout goes to a pipe nobody reads (a stalled log shipper, a terminal paused with Ctrl-S): once the
/// pipe and the log queue are full, log lines are dropped, not waited for, so connections keep being relayed; once
/// stdout is read again, the count of the lines dropped is written to stderr when the next line is queued.
/// </summary>
[TestFixture]
public sealed class StalledLogTests
{
    // Two lines per connection on each host (connected, closed): about 2,900 lines fill a 64 KiB pipe and the
    // console logger's 2,500-line queue, so 2,500 connections run well past both.
    private const int Connections = 2500;

    // The runtime's words (Microsoft.Extensions.Logging.Console), as README.md quotes them.
    private const string DropNotice = "message(s) dropped because of queue size limit";

    private Topology? topology;
    private EgressDeployment? deployment;
    private string? resumeFile;

    [OneTimeSetUp]
    public async Task Deploy()
    {
        Root.RequireOrIgnore();
        topology = await Topology.CreateAsync();
        await topology.StartWorldServicesAsync();
        resumeFile = Path.Combine(topology.WorkDirectory, "stdout-resume");
        deployment = await EgressDeployment.StartAsync(topology, EnclaveConfig.Render(EnclaveConfig.DefaultDestinations),
            hostOpenFiles: null, enclaveOpenFiles: null, stdoutPausedUntil: resumeFile);
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
    public async Task AStdoutNobodyReadsCostsLogLinesNotConnectionsAndTheirCountIsWrittenOnceItIsReadAgain()
    {
        var run = await Clients.EchoConnectionsAsync(topology!.Enclave, WorldAddresses.InAllowedCidr.ToString(), WorldPorts.Echo, Connections,
            TimeSpan.FromSeconds(120), stopAtFirstFailure: true);
        Assert.Multiple(() =>
        {
            Assert.That(run.StandardOutput, Does.Contain($"ok {Connections} of {Connections}"),
                () => $"connections stalled behind the unread log: {run}\negress-host:\n{deployment!.Host.Output}\negress-enclave:\n{deployment.Enclave.Output}");
            Assert.That(deployment!.Host.HasExited, Is.False, () => $"egress-host exited: {deployment.Host}");
            Assert.That(deployment.Enclave.HasExited, Is.False, () => $"egress-enclave exited: {deployment.Enclave}");
        });

        await File.WriteAllTextAsync(resumeFile!, "");
        // The queue drains once stdout is read; the count is written when the next line is queued after that.
        foreach (var host in new[] { deployment!.Host, deployment.Enclave })
        {
            string? dropped = null;
            for (var attempt = 0; attempt < 20 && dropped is null; attempt++)
            {
                var curl = await Clients.CurlAsync(topology.Enclave, "http://198.18.0.10/");
                Assert.That(curl.ExitCode, Is.Zero, curl.ToString);
                dropped = await host.WaitForLineAsync(line => line.Contains(DropNotice, StringComparison.Ordinal), TimeSpan.FromSeconds(1));
            }

            Assert.That(dropped, Is.Not.Null, () => $"{host.Name} never said that lines were dropped:\n{string.Join('\n', host.Lines.TakeLast(20))}");
            Assert.That(host.ErrorLines, Has.Some.Contains(DropNotice), "the count is on stderr");
            TestContext.Out.WriteLine($"{host.Name}: {dropped}");
        }
    }
}
