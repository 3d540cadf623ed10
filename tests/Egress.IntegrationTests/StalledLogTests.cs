using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// Both hosts' stdout goes to a pipe nobody reads (a stalled log shipper, a terminal paused with Ctrl-S): once the
/// pipe and the log queue are full, log lines are dropped, not waited for, so connections keep being relayed; once
/// stdout is read again, the count of the lines dropped is written there, in the log's format, where they are missing.
/// </summary>
[TestFixture]
public sealed class StalledLogTests
{
    // Two lines per connection on each host (connected, closed), about 150 bytes each: about 2,200 lines fill a 64 KiB
    // pipe and the 256 KiB queue (LogBatchWriter.DefaultCapacity), so 2,500 connections run well past both.
    private const int Connections = 2500;

    // HostLog.LinesDropped, as README.md quotes it.
    private const string DropNotice = "log line(s) dropped here";

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
        // Once stdout is read again, the lines queued before the first one dropped are written, then the count.
        foreach (var host in new[] { deployment!.Host, deployment.Enclave })
        {
            var dropped = await host.WaitForLineAsync(line => line.Contains(DropNotice, StringComparison.Ordinal), TimeSpan.FromSeconds(20));
            Assert.That(dropped, Is.Not.Null, () => $"{host.Name} never said that lines were dropped:\n{string.Join('\n', host.Lines.TakeLast(20))}");
            Assert.That(dropped, Does.Match(@"^\d{4}-\d\d-\d\dT\S+Z warn: Egress\.Log\[3\] [1-9][0-9]* " + System.Text.RegularExpressions.Regex.Escape(DropNotice)), "a line of the log's own format");
            Assert.That(host.ErrorLines, Has.None.Contains(DropNotice), "the count is on stdout, where the lines are missing");
            TestContext.Out.WriteLine($"{host.Name}: {dropped}");
        }

        // And logging goes on: a connection after the stall is logged.
        var seen = deployment.Enclave.Lines.Count;
        var curl = await Clients.CurlAsync(topology.Enclave, "http://198.18.0.10/");
        Assert.That(curl.ExitCode, Is.Zero, curl.ToString);
        var logged = await deployment.Enclave.WaitForLineAsync(
            line => line.Contains("connection to 198.18.0.10:80 allowed", StringComparison.Ordinal) && deployment.Enclave.Lines.Skip(seen).Contains(line),
            TimeSpan.FromSeconds(10));
        Assert.That(logged, Is.Not.Null, () => $"no line for the connection after the stall:\n{string.Join('\n', deployment.Enclave.Lines.TakeLast(10))}");
    }
}
