using System.Diagnostics;
using System.Net.Sockets;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// <c>[relay] half_closed_timeout_seconds = 2</c> for real: an unmodified nc in the enclave sends a byte, closes its
/// side and exits, to a world server that reads to the end and then neither answers nor closes. Before, the
/// half-closed relays held the connection (and its slot in the enclave's connection limit) for the idle timeout, an
/// hour: a red-team trial filled the limit that way and every other app was refused. Now both hosts reset it once it
/// has carried no byte for the half-closed timeout.
/// </summary>
[TestFixture]
public sealed class HalfClosedTimeoutTests
{
    private const int HoldPort = 9010;
    private static readonly TimeSpan Watch = TimeSpan.FromSeconds(30);

    private readonly TaskCompletionSource<TimeSpan> resetAfterEof = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Topology? topology;
    private EgressDeployment? deployment;

    [OneTimeSetUp]
    public async Task Deploy()
    {
        Root.RequireOrIgnore();
        topology = await Topology.CreateAsync();
        await topology.StartWorldServicesAsync();
        topology.StartWorldServer("hold", HoldPort, HoldAfterEofAsync);
        string toml = EnclaveConfig.Render(EnclaveConfig.DefaultDestinations) + "\n[relay]\nhalf_closed_timeout_seconds = 2\n";
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
    public async Task AConnectionWhoseAppClosedAndExitedIsResetAfterTheHalfClosedTimeout()
    {
        var nc = await Clients.ShellAsync(topology!.Enclave, $"printf x | nc -N -w 1 198.18.0.10 {HoldPort}");
        TimeSpan reset = await resetAfterEof.Task.WaitAsync(Watch + TimeSpan.FromSeconds(10));
        var closed = await EgressFixture.LogLineAsync(deployment!.Host, $"connection to 198.18.0.10:{HoldPort} closed", "HalfClosedTimeout");

        Assert.Multiple(() =>
        {
            Assert.That(nc.ExitCode, Is.Zero, () => $"nc: {nc}");
            Assert.That(reset, Is.InRange(TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(10)), "the destination's connection was reset about 2 s after the app's FIN");
            Assert.That(closed, Is.Not.Null, () => $"egress-host did not log the timeout:\n{deployment.Host.Output}");
        });
    }

    /// <summary>Reads to the end, then holds the connection, watching its TCP state (TCP_INFO) for the reset.</summary>
    private async Task HoldAfterEofAsync(NetworkStream stream, Socket socket, CancellationToken cancellationToken)
    {
        byte[] buffer = new byte[256];
        while (await stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false) > 0)
        {
        }

        var sinceEof = Stopwatch.StartNew();
        byte[] info = new byte[8];
        while (sinceEof.Elapsed < Watch && !cancellationToken.IsCancellationRequested)
        {
            if (socket.GetRawSocketOption(6 /* IPPROTO_TCP */, 11 /* TCP_INFO */, info) > 0 && info[0] == 7 /* TCP_CLOSE */)
            {
                resetAfterEof.TrySetResult(sinceEof.Elapsed);
                return;
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }

        resetAfterEof.TrySetResult(Timeout.InfiniteTimeSpan);
    }
}
