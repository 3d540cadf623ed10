using System.Globalization;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// SIGTERM to egress-host while a connection is being relayed: it stops accepting at once, the live connection
/// carries on to its natural end (well inside the default 10 s drain), and the host exits 0. This fixture's host
/// does not survive its test.
/// </summary>
[TestFixture]
public sealed class HostShutdownTests : EgressFixture
{
    [Test]
    public async Task SigtermStopsAcceptingLetsTheLiveConnectionFinishAndExitsZero()
    {
        var live = Topology.StartProcess("nc live", Topology.Enclave,
            "sh", "-c", $"(echo first; sleep 3; echo second) | nc -N 198.18.1.20 {WorldPorts.Echo}");
        Assert.That(await live.WaitForLineAsync(line => line == "first", TimeSpan.FromSeconds(10)), Is.Not.Null, live.ToString);

        var kill = await Command.RunAsync(["kill", "-TERM", Deployment.Host.Id.ToString(CultureInfo.InvariantCulture)], Clients.Timeout);
        Assert.That(kill.ExitCode, Is.Zero, kill.ToString);

        CommandResult? refused = null;
        await Wait.UntilAsync(
            async () =>
            {
                refused = await Clients.CurlAsync(Topology.Enclave, "http://198.18.0.10/");
                return refused.ExitCode != 0;
            },
            TimeSpan.FromSeconds(5),
            () => $"egress-host still accepts after SIGTERM: {refused}");

        await Wait.UntilAsync(() => Task.FromResult(live.HasExited), TimeSpan.FromSeconds(10), live.ToString);
        await Wait.UntilAsync(() => Task.FromResult(Deployment.Host.HasExited), TimeSpan.FromSeconds(10), Deployment.Host.ToString);
        Assert.Multiple(() =>
        {
            Assert.That(refused!.ExitCode, Is.AnyOf(Clients.RefusedOrReset), refused.ToString);
            Assert.That(live.Lines, Is.EqualTo(new[] { "first", "second" }), "the live connection finished after SIGTERM");
            Assert.That(live.ExitCode, Is.Zero, live.ToString);
            Assert.That(Deployment.Host.ExitCode, Is.Zero, Deployment.Host.ToString);
            Assert.That(Deployment.Host.Output, Does.Not.Contain("aborting"));
            Assert.That(Deployment.Host.Output, Does.Match(@"connection to 198\.18\.1\.20:7 closed: 13 bytes out, 13 bytes in, BothCompleted"));
        });
    }
}
