using System.Net;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// egress-enclave restarted while the application runs (bootstrap.sh's supervisor restarts it after a crash): with
/// <c>--learned-addresses</c> the new process allows the addresses the one before it learned from DNS answers, so an
/// application that resolved a name before the crash and kept its address is not denied it after; without the file it
/// is (<c>never learned</c>), until the application resolves the name again.
/// </summary>
[TestFixture]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class EnclaveRestartTests : EgressFixture
{
    private const string Kept = "kept.allowed.test";
    private const string Forgotten = "forgotten.allowed.test";

    internal override string ConfigToml => EnclaveConfig.Render([Kept, Forgotten]);

    internal override string[] EnclaveArguments(Topology topology)
    {
        string state = Path.Combine(topology.WorkDirectory, "state");
        Directory.CreateDirectory(state, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute); // whatever the umask
        return ["--learned-addresses", Path.Combine(state, "learned-addresses")];
    }

    internal override async Task PrepareAsync(Topology topology)
    {
        await topology.StartDnsmasqAsync(
        [
            DnsmasqRecord.Host(Kept, WorldAddresses.Unlisted, ttlSeconds: 300),
            DnsmasqRecord.Host(Forgotten, WorldAddresses.ShortTtl, ttlSeconds: 300),
        ]);
        topology.SetEnclaveNameserver(IPAddress.Loopback);
    }

    [Test]
    public async Task ACrashedEnclaveRestartedWithItsFileAllowsWhatItHadLearned()
    {
        var dig = await Clients.DigAsync(Topology.Enclave, Kept);
        Assert.That(dig.Answers.Select(answer => answer.Data), Is.EqualTo(new[] { WorldAddresses.Unlisted.ToString() }), dig.ToString);
        await Task.Delay(TimeSpan.FromSeconds(2)); // written within 1 s of the answer

        var previous = await Deployment.RestartEnclaveAsync("KILL");
        await TestContext.Out.WriteLineAsync($"egress-enclave before the crash:\n{previous.Output}");
        var echo = await Clients.NcAsync(Topology.Enclave, "after restart\n"u8.ToArray(), "-N", "-w", "5", WorldAddresses.Unlisted.ToString(), $"{WorldPorts.Echo}");
        var restored = await Deployment.Enclave.WaitForLineAsync(
            line => System.Text.RegularExpressions.Regex.IsMatch(line, "learned addresses: restored [1-9][0-9]* name-address pairs from"), TimeSpan.FromSeconds(3));
        var allowed = await LogLineAsync(Deployment.Enclave, $"{WorldAddresses.Unlisted}:{WorldPorts.Echo}", $"learned from {Kept}");

        Assert.Multiple(() =>
        {
            Assert.That(echo.ExitCode, Is.Zero, echo.ToString);
            Assert.That(echo.StandardOutput, Is.EqualTo("after restart\n"), echo.ToString);
            Assert.That(restored, Is.Not.Null, () => $"no restore line:\n{Deployment.Enclave.Output}");
            Assert.That(allowed, Is.Not.Null, () => $"not allowed through the restored name:\n{Deployment.Enclave.Output}");
        });
    }

    /// <summary>What the file is for: the same restart without it denies the kept address.</summary>
    [Test]
    public async Task WithoutTheFileARestartedEnclaveDeniesAnAddressResolvedBeforeIt()
    {
        string[] withFile = Deployment.EnclaveArguments;
        var dig = await Clients.DigAsync(Topology.Enclave, Forgotten);
        Assert.That(dig.Answers.Select(answer => answer.Data), Is.EqualTo(new[] { WorldAddresses.ShortTtl.ToString() }), dig.ToString);
        try
        {
            await Deployment.RestartEnclaveAsync("KILL", arguments: []);
            var echo = await Clients.NcAsync(Topology.Enclave, "after restart\n"u8.ToArray(), "-N", "-w", "5", WorldAddresses.ShortTtl.ToString(), $"{WorldPorts.Echo}");
            var denied = await LogLineAsync(Deployment.Enclave, $"{WorldAddresses.ShortTtl}:{WorldPorts.Echo}", "never learned");

            Assert.Multiple(() =>
            {
                Assert.That(echo.StandardOutput, Is.Empty, echo.ToString);
                Assert.That(denied, Is.Not.Null, () => $"not denied as never learned:\n{Deployment.Enclave.Output}");
            });
        }
        finally
        {
            await Deployment.RestartEnclaveAsync("TERM", withFile);
        }
    }

    /// <summary>A stop (SIGTERM) writes what was learned since the last write, and the next start restores it.</summary>
    [Test]
    public async Task AStoppedEnclaveWritesWhatItLearnedAndTheNextStartRestoresIt()
    {
        var dig = await Clients.DigAsync(Topology.Enclave, Forgotten);
        Assert.That(dig.Answers, Is.Not.Empty, dig.ToString);

        var previous = await Deployment.RestartEnclaveAsync("TERM");
        var echo = await Clients.NcAsync(Topology.Enclave, "after stop\n"u8.ToArray(), "-N", "-w", "5", WorldAddresses.ShortTtl.ToString(), $"{WorldPorts.Echo}");

        Assert.That(echo.StandardOutput, Is.EqualTo("after stop\n"), () => $"{echo}\nbefore:\n{previous.Output}\nafter:\n{Deployment.Enclave.Output}");
    }
}
