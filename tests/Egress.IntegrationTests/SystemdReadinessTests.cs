using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// egress-host under the shipped unit (deploy/host/egress-host.service: <c>Type=notify</c>, <c>DynamicUser=yes</c>,
/// <c>ProtectProc=invisible</c>). An operator's trial found that Microsoft.Extensions.Hosting.Systemd 10.0 decides
/// "running under systemd" by reading <c>/proc/PPID/comm</c>, which ProtectProc=invisible hides from the dynamic user,
/// so egress-host never sent READY=1 and systemd stopped it after TimeoutStartSec, over and over. systemd also sets
/// <c>SYSTEMD_EXEC_PID</c> to the service's main process, which needs no /proc. Here the host's parent is the test
/// runner (not a process named systemd, as when /proc hides PID 1), with systemd's two variables set.
/// </summary>
public sealed class SystemdReadinessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private string _directory = null!;

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("egress-notify-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_directory, recursive: true);

    [Test]
    public async Task EgressHostSendsReadyWhenSystemdNamesItsMainProcess()
    {
        string config = Path.Combine(_directory, "enclave.toml");
        await File.WriteAllTextAsync(config, $"""
            [tunnel]
            host_endpoint = "unix:{_directory}/tunnel.sock"
            [host]
            dns_upstreams = ["127.0.0.1:53"]
            """);
        string notifyPath = Path.Combine(_directory, "notify.sock");
        using var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        notify.Bind(new UnixDomainSocketEndPoint(notifyPath));

        // exec keeps the shell's PID, so SYSTEMD_EXEC_PID=$$ names egress-host's own process, as systemd's does.
        string[] command =
        [
            "sh", "-c", "export SYSTEMD_EXEC_PID=$$ NOTIFY_SOCKET=\"$0\"; exec \"$@\"", notifyPath,
            .. HostBinaries.Host("--config", config),
        ];
        await using var host = BackgroundProcess.Start("egress-host", command);

        string? ready = await ReceiveAsync(notify, "READY=1");
        Assert.That(ready, Is.Not.Null, () => "no READY=1 on NOTIFY_SOCKET within 30 s\n" + host);

        var kill = await Command.RunAsync(["kill", "-TERM", host.Id.ToString(CultureInfo.InvariantCulture)], Timeout);
        Assert.That(kill.ExitCode, Is.Zero, kill.ToString);
        await Wait.UntilAsync(() => Task.FromResult(host.HasExited), Timeout, host.ToString);

        Assert.Multiple(() =>
        {
            Assert.That(host.ExitCode, Is.Zero, host.ToString);
            // journald's format: a priority prefix and no timestamp (journald stamps each line).
            Assert.That(host.Lines, Has.Some.StartsWith("<6>Egress.Host[1] starting egress-host "), host.ToString);
        });
    }

    private static async Task<string?> ReceiveAsync(Socket socket, string wanted)
    {
        var buffer = new byte[4096];
        using var cancel = new CancellationTokenSource(Timeout);
        try
        {
            while (true)
            {
                int length = await socket.ReceiveAsync(buffer, SocketFlags.None, cancel.Token);
                string message = Encoding.UTF8.GetString(buffer, 0, length);
                if (message.Split('\n').Contains(wanted))
                {
                    return message;
                }
            }
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }
}
