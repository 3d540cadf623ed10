using System.Net;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// The parent's own addresses are not egress: an allowed name whose answer points at the parent (IPv4 and IPv6), or
/// a network entry that covers the parent's address, must not reach a service listening on the parent. A socat
/// server on the parent answers <c>PARENT-LOCAL</c> on port 8082 to whoever reaches it.
/// </summary>
[TestFixture]
public sealed class ParentOwnAddressTests : EgressFixture
{
    private const string Parent4 = "parent4.hostile.test";
    private const string Parent6 = "parent6.hostile.test";
    private const int ParentPort = 8082;

    internal override string ConfigToml => EnclaveConfig.Render([Parent4, Parent6, "2001:db8::/64"]);

    internal override async Task PrepareAsync(Topology topology)
    {
        await topology.StartDnsmasqAsync(DnsmasqRecord.Host(Parent4, WorldAddresses.Parent), DnsmasqRecord.Host(Parent6, WorldAddresses.ParentV6));
        topology.SetEnclaveNameserver(IPAddress.Loopback);
        topology.StartProcess("parent-local server", topology.Parent,
            "socat", $"TCP6-LISTEN:{ParentPort},fork,reuseaddr,ipv6only=0", "SYSTEM:echo PARENT-LOCAL");
        await Wait.UntilAsync(
            async () => (await Command.RunInNamespaceAsync(topology.Parent, Clients.Timeout, "sh", "-c", $"ss -ltn | grep -q ':{ParentPort} '")).ExitCode == 0,
            TimeSpan.FromSeconds(10),
            () => "the parent-local server did not start");
    }

    [TestCase(Parent4, "198.18.0.1")]
    [TestCase(Parent6, "2001:db8::1")]
    public async Task AnAllowedNameResolvingToTheParentDoesNotReachIt(string name, string parentAddress)
    {
        var nc = await Clients.NcAsync(Topology.Enclave, [], "-N", "-w", "5", name, $"{ParentPort}");
        string endpoint = parentAddress.Contains(':') ? $"[{parentAddress}]:{ParentPort}" : $"{parentAddress}:{ParentPort}";
        var denied = await LogLineAsync(Deployment.Host, endpoint, "denied: an address of the parent itself (interface ");

        Assert.Multiple(() =>
        {
            Assert.That(nc.StandardOutput, Does.Not.Contain("PARENT-LOCAL"), nc.ToString);
            Assert.That(denied, Is.Not.Null, () => $"egress-host did not deny its own address:\n{Deployment.Host.Output}");
        });
    }

    [Test]
    public async Task ANetworkEntryCoveringTheParentsIPv6AddressDoesNotReachIt()
    {
        var nc = await Clients.NcAsync(Topology.Enclave, [], "-N", "-w", "5", WorldAddresses.ParentV6.ToString(), $"{ParentPort}");
        var denied = await LogLineAsync(Deployment.Host, $"[{WorldAddresses.ParentV6}]:{ParentPort}", "denied: an address of the parent itself");

        Assert.Multiple(() =>
        {
            Assert.That(nc.StandardOutput, Does.Not.Contain("PARENT-LOCAL"), nc.ToString);
            Assert.That(denied, Is.Not.Null, () => $"egress-host did not deny its own address:\n{Deployment.Host.Output}");
        });
    }

    [Test]
    public async Task TheWorldBehindTheSameNetworkEntryIsStillReached()
    {
        var echo = await Clients.NcAsync(Topology.Enclave, "still here\n"u8.ToArray(), "-N", "-w", "5", WorldAddresses.AllowedV6.ToString(), $"{WorldPorts.Echo}");

        Assert.That((echo.ExitCode, echo.StandardOutput), Is.EqualTo((0, "still here\n")), echo.ToString);
    }
}
