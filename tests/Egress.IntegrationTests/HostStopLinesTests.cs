using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// A stop with no live connection: an operator's trial found that SIGTERM to an idle host wrote no line at all (the
/// drain lines come only with connections to drain), so its log looked the same as after a SIGKILL. Each host now
/// says when a stop begins and when it has ended. Runs the built hosts in this namespace, on loopback only.
/// </summary>
public sealed class HostStopLinesTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private string _directory = null!;

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("egress-stop-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_directory, recursive: true);

    [TestCase("egress-host")]
    [TestCase("egress-enclave")]
    public async Task AnIdleHostSaysItStopsAndThatItStopped(string program)
    {
        var (host, category) = await StartAsync(program);
        await using (host)
        {
            await StopAsync(host);

            Assert.Multiple(() =>
            {
                Assert.That(host.ExitCode, Is.Zero, host.ToString);
                Assert.That(host.Lines, Has.Some.Contains($"{category}[6] stopping: a stop was asked for (SIGTERM, SIGINT or SIGQUIT); accepting no more"), host.ToString);
                Assert.That(host.Lines[^1], Does.EndWith($"{category}[7] stopped"), host.ToString);
            });
        }
    }

    /// <summary>A robustness trial: SIGHUP's default action ended either host at once, without the drain or a line
    /// (a cut-short upload reached its destination as a clean end), and systemd's Restart=on-failure does not restart
    /// a process SIGHUP ended. Neither host reloads: SIGHUP is ignored with a warning.</summary>
    [TestCase("egress-host")]
    [TestCase("egress-enclave")]
    public async Task SighupIsIgnoredWithAWarningAndTheHostRunsOn(string program)
    {
        // SIGHUP at its default disposition, as a service manager starts a host: a host that starts with it ignored
        // (under nohup, as a CI run may be, or bootstrap.sh) keeps it ignored and has no handler to say so.
        var (host, category) = await StartAsync(program, ["env", "--default-signal=HUP"]);
        await using (host)
        {
            var hangup = await Command.RunAsync(["kill", "-HUP", host.Id.ToString(CultureInfo.InvariantCulture)], Timeout);
            Assert.That(hangup.ExitCode, Is.Zero, hangup.ToString);
            string? ignored = await host.WaitForLineAsync(line => line.Contains($"{category}[9] ", StringComparison.Ordinal), Timeout);
            await Task.Delay(TimeSpan.FromMilliseconds(500));
            bool ranOn = !host.HasExited;
            await StopAsync(host);

            Assert.Multiple(() =>
            {
                Assert.That(ignored, Does.EndWith("SIGHUP ignored: this host does not reload its configuration; restart it to apply a change (SIGTERM stops it after the drain)"), host.ToString);
                Assert.That(ranOn, Is.True, host.ToString);
                Assert.That(host.ExitCode, Is.Zero, "then stopped by SIGTERM as usual: " + host);
                Assert.That(host.Lines[^1], Does.EndWith($"{category}[7] stopped"), host.ToString);
            });
        }
    }

    private async Task<(BackgroundProcess Host, string Category)> StartAsync(string program, string[]? prefix = null)
    {
        string config = Path.Combine(_directory, "enclave.toml");
        await File.WriteAllTextAsync(config, $"""
            [tunnel]
            enclave_endpoint = "unix:{_directory}/tunnel.sock"
            host_endpoint = "unix:{_directory}/tunnel.sock"
            [host]
            dns_upstreams = ["127.0.0.1:53"]
            [enclave]
            proxy_listen = ["127.0.0.1:{FreePort()}"]
            dns_listen = ["127.0.0.1:{FreePort()}"]
            """);
        string category = program == "egress-host" ? "Egress.Host" : "Egress.Enclave";
        string[] command = [.. prefix ?? [], .. program == "egress-host" ? HostBinaries.Host("--config", config) : HostBinaries.Enclave("--config", config)];
        var host = BackgroundProcess.Start(program, command);
        string? listening = await host.WaitForLineAsync(line => line.Contains(" listening on ", StringComparison.Ordinal), Timeout);
        if (listening is null)
        {
            string output = host.ToString();
            await host.DisposeAsync(); // the caller's await using never gets it
            Assert.Fail($"{program} did not start listening: {output}");
        }

        return (host, category);
    }

    private static async Task StopAsync(BackgroundProcess host)
    {
        var kill = await Command.RunAsync(["kill", "-TERM", host.Id.ToString(CultureInfo.InvariantCulture)], Timeout);
        Assert.That(kill.ExitCode, Is.Zero, kill.ToString);
        await Wait.UntilAsync(() => Task.FromResult(host.HasExited), Timeout, host.ToString);
    }

    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}
