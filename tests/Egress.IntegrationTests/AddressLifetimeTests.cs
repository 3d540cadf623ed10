using System.Net;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// How long an address learned from DNS stays allowed, end to end with real clients (glibc's resolver in nc, dig):
/// while a connection allowed through it is open it stays allowed on both sides whatever its TTL (apps such as JVMs,
/// connection pools and proxies keep answers longer than the TTL), and an egress-host restarted while the enclave
/// still allows an address re-learns it by resolving the name the enclave learned it from. TTL floor and grace are
/// 2 s each here, so an address with TTL 1 is gone 4 s after it was resolved unless it is in use.
/// </summary>
[TestFixture]
public sealed class AddressLifetimeTests : EgressFixture
{
    private const string Busy = "busy.allowed.test";
    private const string Restarted = "restart.allowed.test";
    private const int FloorSeconds = 2;
    private const int GraceSeconds = 2;

    internal override string ConfigToml => EnclaveConfig.Render([Busy, Restarted], ttlFloorSeconds: FloorSeconds, graceSeconds: GraceSeconds);

    internal override async Task PrepareAsync(Topology topology)
    {
        await topology.StartDnsmasqAsync(
        [
            DnsmasqRecord.Host(Busy, WorldAddresses.ShortTtl, ttlSeconds: 1),
            DnsmasqRecord.Host(Restarted, WorldAddresses.Unlisted, ttlSeconds: 30),
        ]);
        topology.SetEnclaveNameserver(IPAddress.Loopback);
    }

    [Test]
    public async Task AddressInUseStaysAllowedPastItsTtlFloorAndGraceOnBothSides()
    {
        // An app resolves the name (TTL 1) and keeps a connection to its address busy for 12 s...
        var busy = Topology.StartProcess("nc busy", Topology.Enclave,
            "sh", "-c", $"(echo first; sleep 12; echo last) | nc -N {Busy} {WorldPorts.Echo}");
        Assert.That(await busy.WaitForLineAsync(line => line == "first", TimeSpan.FromSeconds(10)), Is.Not.Null, busy.ToString);

        // ...and opens a second connection to the address it still has, after floor + grace + 1 s.
        await Task.Delay(TimeSpan.FromSeconds(FloorSeconds + GraceSeconds + 1));
        var second = await Clients.NcAsync(Topology.Enclave, "second\n"u8.ToArray(), "-N", "-w", "5", WorldAddresses.ShortTtl.ToString(), $"{WorldPorts.Echo}");
        var enclaveLine = await LogLineAsync(Deployment.Enclave, $"{WorldAddresses.ShortTtl}:{WorldPorts.Echo}", $"learned from {Busy}, TTL expired, in use by 1 connection");
        var hostLine = await LogLineAsync(Deployment.Host, $"{WorldAddresses.ShortTtl}:{WorldPorts.Echo}", $"learned from {Busy}, TTL expired, in use by 1 connection");
        await Wait.UntilAsync(() => Task.FromResult(busy.HasExited), TimeSpan.FromSeconds(15), busy.ToString);

        Assert.Multiple(() =>
        {
            Assert.That(second.ExitCode, Is.Zero, second.ToString);
            Assert.That(second.StandardOutput, Is.EqualTo("second\n"), second.ToString);
            Assert.That(enclaveLine, Is.Not.Null, () => $"the enclave did not allow it as in use:\n{Deployment.Enclave.Output}");
            Assert.That(hostLine, Is.Not.Null, () => $"the parent did not allow it as in use:\n{Deployment.Host.Output}");
            Assert.That(busy.Lines, Is.EqualTo(new[] { "first", "last" }), "the busy connection relayed to its end");
        });
    }

    [Test]
    public async Task RestartedHostReLearnsAnAddressTheEnclaveStillAllowsFromItsHint()
    {
        var dig = await Clients.DigAsync(Topology.Enclave, Restarted);
        Assert.That(dig.Answers.Select(answer => answer.Data), Is.EqualTo(new[] { WorldAddresses.Unlisted.ToString() }), dig.ToString);

        var previous = await Deployment.RestartHostAsync();
        await TestContext.Out.WriteLineAsync($"egress-host before the restart:\n{previous.Output}");
        var echo = await Clients.NcAsync(Topology.Enclave, "after restart\n"u8.ToArray(), "-N", "-w", "5", WorldAddresses.Unlisted.ToString(), $"{WorldPorts.Echo}");
        var relearned = await LogLineAsync(Deployment.Host, $"re-learned {WorldAddresses.Unlisted} from hint {Restarted}");

        Assert.Multiple(() =>
        {
            Assert.That(echo.ExitCode, Is.Zero, echo.ToString);
            Assert.That(echo.StandardOutput, Is.EqualTo("after restart\n"), echo.ToString);
            Assert.That(relearned, Is.Not.Null, () => $"the restarted parent did not re-learn the address:\n{Deployment.Host.Output}");
            Assert.That(Deployment.Host.Output, Does.Not.Contain("never learned from an allowed name"));
        });
    }

    [Test]
    public async Task ParentDeniesAnAddressWhoseHintDoesNotResolveToIt()
    {
        // What a compromised enclave could send: an address with an allowed name as its hint. The parent resolves the
        // hint itself and allows only an address in its own answer.
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var response = await TunnelProbe.RequestAsync(Deployment.TunnelSocketPath, new IPEndPoint(WorldAddresses.Denied, WorldPorts.Echo), Restarted, cts.Token);
        var why = await LogLineAsync(Deployment.Host, $"could not re-learn {WorldAddresses.Denied} from hint {Restarted}", $"not including {WorldAddresses.Denied}");

        Assert.Multiple(() =>
        {
            Assert.That(response.Status, Is.EqualTo(TunnelProbe.StatusDeniedByPolicy), response.Detail);
            Assert.That(why, Is.Not.Null, () => $"the parent did not say why:\n{Deployment.Host.Output}");
        });
    }
}
