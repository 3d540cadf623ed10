using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// TCP keepalive on the parent's outbound sockets for real (<c>[host] keepalive_idle_seconds = 2</c>, interval 1 s,
/// 3 probes): an app in the enclave holds an idle relayed connection, the world then drops everything from the parent
/// (a black-holed destination); the parent's probes go unanswered, its relay read fails with ETIMEDOUT, and the app's
/// connection ends instead of hanging. Without keepalive it stays open (see <c>docs/configuration.md</c>).
/// </summary>
[TestFixture]
public sealed class KeepAliveTests
{
    private static readonly TimeSpan AppNoticeLimit = TimeSpan.FromSeconds(15);

    private Topology? topology;
    private EgressDeployment? deployment;

    [OneTimeSetUp]
    public async Task Deploy()
    {
        Root.RequireOrIgnore();
        topology = await Topology.CreateAsync();
        await topology.StartWorldServicesAsync();
        string toml = EnclaveConfig.Render(EnclaveConfig.DefaultDestinations).Replace(
            "[host]\n", "[host]\nkeepalive_idle_seconds = 2\nkeepalive_interval_seconds = 1\nkeepalive_probes = 3\n", StringComparison.Ordinal);
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
    public async Task AnIdleConnectionToABlackHoledDestinationEndsForTheApp()
    {
        var destination = new IPEndPoint(WorldAddresses.InAllowedCidr, WorldPorts.Echo);
        using var setup = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using var app = await NetworkNamespace.ConnectAsync(topology!.Enclave, destination, setup.Token);
        await app.SendAsync("ping\n"u8.ToArray(), SocketFlags.None, setup.Token);
        var buffer = new byte[64];
        int echoed = await app.ReceiveAsync(buffer, SocketFlags.None, setup.Token);
        Assert.That(echoed, Is.EqualTo(5), "the connection is relayed to the world's echo server");

        // The kernel has the configured values on the parent's outbound socket: ss -o shows timer:(keepalive,...), set
        // one to two seconds after the connect (DeferredKeepAlive), so a few seconds are allowed for it.
        var ss = await Command.RunInNamespaceAsync(topology.Parent, TimeSpan.FromSeconds(10), "ss", "-Htnoi", "state", "established", "dst", destination.ToString());
        for (var armed = Stopwatch.StartNew(); !ss.StandardOutput.Contains("timer:(keepalive,", StringComparison.Ordinal) && armed.Elapsed < TimeSpan.FromSeconds(5);)
        {
            await Task.Delay(200, setup.Token);
            ss = await Command.RunInNamespaceAsync(topology.Parent, TimeSpan.FromSeconds(10), "ss", "-Htnoi", "state", "established", "dst", destination.ToString());
        }

        Assert.That(ss.StandardOutput, Does.Contain("timer:(keepalive,"), () => $"no keepalive timer on the parent's socket: {ss}");

        string[] blackHole = ["iptables", "-w", "-I", "INPUT", "-s", WorldAddresses.Parent.ToString(), "-j", "DROP"];
        var added = await Command.RunInNamespaceAsync(topology.World, TimeSpan.FromSeconds(10), blackHole);
        Assert.That(added.ExitCode, Is.Zero, () => $"could not black-hole the parent in the world: {added}");
        try
        {
            var elapsed = Stopwatch.StartNew();
            string outcome;
            using var limit = new CancellationTokenSource(AppNoticeLimit);
            try
            {
                int read = await app.ReceiveAsync(buffer, SocketFlags.None, limit.Token);
                outcome = read == 0 ? "end of stream" : $"{read} unexpected bytes";
            }
            catch (SocketException ex)
            {
                outcome = ex.SocketErrorCode == SocketError.ConnectionReset ? "reset" : ex.SocketErrorCode.ToString();
            }
            catch (OperationCanceledException)
            {
                outcome = $"still open after {AppNoticeLimit.TotalSeconds:F0} s";
            }

            TestContext.Out.WriteLine($"the app's connection: {outcome} after {elapsed.Elapsed.TotalSeconds:F1} s");
            var hostLine = await EgressFixture.LogLineAsync(deployment!.Host, destination.ToString(), "stopped answering keepalive probes");
            TestContext.Out.WriteLine($"parent's socket before: {ss.StandardOutput.Trim()}\negress-host: {hostLine}");
            Assert.Multiple(() =>
            {
                Assert.That(outcome, Is.AnyOf("end of stream", "reset"), () => $"egress-host:\n{deployment.Host.Output}\negress-enclave:\n{deployment.Enclave.Output}");
                Assert.That(hostLine, Is.Not.Null, () => $"egress-host did not say why:\n{deployment.Host.Output}");
            });
        }
        finally
        {
            blackHole[3] = "-D";
            await Command.RunInNamespaceAsync(topology.World, TimeSpan.FromSeconds(10), blackHole);
        }
    }
}
