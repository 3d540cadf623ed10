using System.Diagnostics;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// A destination that never answers (the world drops every SYN to 198.18.1.20:9) must not hold every one of the
/// proxy's setup places (<c>enclave.max_pending_connections</c>): an app opening connections to it in a loop kept
/// another app's connect to a healthy destination waiting in the listen backlog for the parent's whole connect
/// timeout (a robustness trial: 28–30 s). Now no destination holds more than three quarters of the places, its further
/// connections wait aside for its turn, and beyond the most that may wait aside (half of <c>enclave.max_connections</c>)
/// they are reset rather than hold a place; none waits for its turn longer than the status timeout. Two such
/// destinations, each within its share, held every place together: now a setup that has waited 250 ms for the parent's
/// status gives its place back while the accept loop waits for one.
/// </summary>
[TestFixture]
public sealed class DestinationShareTests : EgressFixture
{
    private const int Places = 4;
    private const int BlackholePort = 9;
    private const int SlowConnections = 30;

    /// <summary>enclave.max_connections: 20 may wait aside (half of it), so of the slow connections 3 are set up, 20
    /// wait aside, 7 are reset.</summary>
    private const int MaxConnections = 40;

    /// <summary>A burst to a healthy destination, far beyond the share and the most that may wait aside.</summary>
    private const int BurstConnections = 150;

    /// <summary>Opens argv[1] connections at once to nginx, each a GET; prints how many got a 200 and how many failed.</summary>
    private const string BurstScript = """
        import asyncio, sys
        async def one():
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("198.18.0.10", 80), 20)
                w.write(b"GET / HTTP/1.0\r\nHost: 198.18.0.10\r\n\r\n")
                data = await asyncio.wait_for(r.read(), 20)
                w.close()
                return data.startswith(b"HTTP/1.1 200")
            except Exception:
                return False
        async def main():
            results = await asyncio.gather(*(one() for _ in range(int(sys.argv[1]))))
            print(f"ok={sum(results)} failed={len(results) - sum(results)}", flush=True)
        asyncio.run(main())
        """;

    /// <summary>The parent's connect timeout: how long each setup to the blackholed destination holds its place.</summary>
    private const int ConnectTimeoutMs = 8_000;

    /// <summary>A second port that never answers: two blackholed ports, or two addresses of one name.</summary>
    private const int SecondBlackholePort = 10;

    /// <summary>Opens argv[1] connections to each blackholed port in argv[3] (comma-separated; default 9), each one's
    /// connect succeeding (the proxy accepts it), holds them argv[2] seconds, until the parent gives up on them, and
    /// closes them.</summary>
    private const string SlowScript = """
        import socket, sys, time
        socks = []
        ports = [int(p) for p in (sys.argv[3] if len(sys.argv) > 3 else "9").split(",")]
        for _ in range(int(sys.argv[1])):
            for port in ports:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex(("198.18.1.20", port))
                socks.append(s)
        time.sleep(float(sys.argv[2]))
        for s in socks:
            s.close()
        print("done", flush=True)
        """;

    internal override string ConfigToml => EnclaveConfig.Render(EnclaveConfig.DefaultDestinations, connectTimeoutMs: ConnectTimeoutMs)
        + $"\n[enclave]\nmax_pending_connections = {Places}\nmax_connections = {MaxConnections}\n";

    internal override Task PrepareAsync(Topology topology) =>
        Command.RunCheckedAsync("ip", "netns", "exec", topology.World,
            "iptables", "-w", "-I", "INPUT", "-d", "198.18.1.20", "-p", "tcp", "-m", "multiport", "--dports", $"{BlackholePort},{SecondBlackholePort}", "-j", "DROP");

    /// <summary>A burst to a destination that sets up quickly waits in the listen backlog as before the share: its
    /// connections beyond the share wait for a turn holding their places (one comes within a setup's time), and none
    /// is moved aside or reset (an earlier version moved every one aside at once and reset those beyond the bound).</summary>
    [Test]
    public async Task ABurstToAHealthyDestinationIsServedWhole()
    {
        var burst = await Command.RunInNamespaceAsync(Topology.Enclave, TimeSpan.FromSeconds(60), "/usr/bin/python3", "-c", BurstScript, $"{BurstConnections}");

        Assert.That(burst.StandardOutput, Does.Contain($"ok={BurstConnections} failed=0"), () => $"{burst}\n{Deployment.Enclave.Output}");
        Assert.That(Deployment.Enclave.Output, Does.Not.Contain("connection to 198.18.0.10:80 from"), "none refused at the aside bound");
    }

    [Test]
    public async Task ConnectionsToADestinationThatNeverAnswersLeaveOtherDestinationsAPlace()
    {
        var slow = Command.RunInNamespaceAsync(
            Topology.Enclave, TimeSpan.FromSeconds(40), "/usr/bin/python3", "-c", SlowScript, $"{SlowConnections}", $"{(ConnectTimeoutMs / 1000) + 2}");
        string? share = await LogLineAsync(Deployment.Enclave, "198.18.1.20:9 has 3 connections being set up, its share of the places");
        string? refused = await LogLineAsync(
            Deployment.Enclave, "connection to 198.18.1.20:9 from 127.0.0.1:", "refused: 3 connections to it are being set up", "and 20 connections (to any destination) wait aside for a turn, the most that may");

        var elapsed = Stopwatch.StartNew();
        var curl = await Clients.CurlAsync(Topology.Enclave, "http://198.18.0.10/", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "4");
        elapsed.Stop();

        // Those still waiting aside when the status timeout (10 s) has passed are reset, not dialled minutes later.
        string? timedOut = await Deployment.Enclave.WaitForLineAsync(
            line => line.Contains("connection to 198.18.1.20:9 from 127.0.0.1:", StringComparison.Ordinal)
                && line.Contains("its turn did not come within 10,000 ms, the longest a connection waits for one (tunnel.status_timeout_ms)", StringComparison.Ordinal),
            TimeSpan.FromSeconds(15));
        var slowDone = await slow;

        Assert.Multiple(() =>
        {
            Assert.That(share, Is.Not.Null, () => $"no line for the destination at its share:\n{Deployment.Enclave.Output}");
            Assert.That(refused, Is.Not.Null, () => $"no refusal beyond the most waiting aside:\n{Deployment.Enclave.Output}");
            Assert.That((curl.ExitCode, curl.StandardOutput), Is.EqualTo((0, "200")),
                () => $"the healthy destination waited behind the blackholed one ({elapsed.Elapsed.TotalSeconds:F1} s): {curl}\n{Deployment.Enclave.Output}");
            Assert.That(elapsed.Elapsed, Is.LessThan(TimeSpan.FromMilliseconds(ConnectTimeoutMs / 2)), "not after the parent's connect timeout");
            Assert.That(timedOut, Is.Not.Null, () => $"no connection waiting aside was reset at the status timeout:\n{Deployment.Enclave.Output}");
            Assert.That(slowDone.StandardOutput, Does.Contain("done"), slowDone.ToString);
        });
    }

    /// <summary>Two destinations that never answer, each within its share, held every place: a trial's two blackholed
    /// ports kept another app waiting up to 19 s, and here curl timed out. Now setups that have waited 250 ms for the
    /// parent's status give their places back while the accept loop waits for one.</summary>
    [Test]
    public async Task ConnectionsToTwoDestinationsThatNeverAnswerLeaveOtherDestinationsAPlace()
    {
        var slow = Command.RunInNamespaceAsync(
            Topology.Enclave, TimeSpan.FromSeconds(40), "/usr/bin/python3", "-c", SlowScript, "4", $"{(ConnectTimeoutMs / 1000) + 2}", $"{BlackholePort},{SecondBlackholePort}");
        string? gaveBack = await Deployment.Enclave.WaitForLineAsync(
            line => line.Contains("connections being set up had waited 250 ms or more for the parent's status (to 198.18.1.20:", StringComparison.Ordinal),
            TimeSpan.FromSeconds(4));

        var elapsed = Stopwatch.StartNew();
        var curl = await Clients.CurlAsync(Topology.Enclave, "http://198.18.0.10/", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "4");
        elapsed.Stop();
        var slowDone = await slow;

        Assert.Multiple(() =>
        {
            Assert.That(gaveBack, Is.Not.Null, () => $"no line for setups giving their places back:\n{Deployment.Enclave.Output}");
            Assert.That((curl.ExitCode, curl.StandardOutput), Is.EqualTo((0, "200")),
                () => $"the healthy destination waited behind the two blackholed ones ({elapsed.Elapsed.TotalSeconds:F1} s): {curl}\n{Deployment.Enclave.Output}");
            Assert.That(elapsed.Elapsed, Is.LessThan(TimeSpan.FromSeconds(2)), "not after the parent's connect timeout");
            Assert.That(slowDone.StandardOutput, Does.Contain("done"), slowDone.ToString);
        });
    }
}
