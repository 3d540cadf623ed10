using System.Net;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// The parent's own addresses are not egress: an allowed name whose answer points at the parent (IPv4 and IPv6), or
/// a network entry that covers the parent's address, must not reach a service listening on the parent. A socat
/// server on the parent answers <c>PARENT-LOCAL</c> on port 8082 to whoever reaches it. The parent also delivers two
/// prefixes locally without an interface holding their addresses (AnyIP: <c>ip route add local ... dev lo</c>), which
/// network entries cover, and two more in table 100, which rules send unmarked traffic to (<c>ip rule add to ...
/// lookup 100</c>). Two world addresses, reached first, get a local route on the parent while the hosts run.
/// </summary>
[TestFixture]
public sealed class ParentOwnAddressTests : EgressFixture
{
    private const string Parent4 = "parent4.hostile.test";
    private const string Parent6 = "parent6.hostile.test";
    private const int ParentPort = 8082;

    private const string AnyIPv6 = "2001:db8:5::/64";
    private const string AnyIPv4 = "198.19.250.0/24";
    private const string RuledIPv6 = "2001:db8:9::/64";
    private const string RuledIPv4 = "198.19.251.0/24";

    /// <summary>A network entry that covers <see cref="WorldAddresses.Unlisted"/> (and the parent's 198.18.0.1).</summary>
    private const string WorldIPv4 = "198.18.0.0/28";

    internal override string ConfigToml => EnclaveConfig.Render([Parent4, Parent6, "2001:db8::/64", WorldIPv4, AnyIPv6, AnyIPv4, RuledIPv6, RuledIPv4]);

    internal override async Task PrepareAsync(Topology topology)
    {
        await topology.StartDnsmasqAsync(DnsmasqRecord.Host(Parent4, WorldAddresses.Parent), DnsmasqRecord.Host(Parent6, WorldAddresses.ParentV6));
        topology.SetEnclaveNameserver(IPAddress.Loopback);
        await Command.RunCheckedAsync("ip", "-n", topology.Parent, "-6", "route", "add", "local", AnyIPv6, "dev", "lo");
        await Command.RunCheckedAsync("ip", "-n", topology.Parent, "route", "add", "local", AnyIPv4, "dev", "lo");
        await Command.RunCheckedAsync("ip", "-n", topology.Parent, "-6", "rule", "add", "to", RuledIPv6, "lookup", "100");
        await Command.RunCheckedAsync("ip", "-n", topology.Parent, "-6", "route", "add", "local", RuledIPv6, "dev", "lo", "table", "100");
        await Command.RunCheckedAsync("ip", "-n", topology.Parent, "rule", "add", "to", RuledIPv4, "lookup", "100");
        await Command.RunCheckedAsync("ip", "-n", topology.Parent, "route", "add", "local", RuledIPv4, "dev", "lo", "table", "100");
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

    /// <summary>From a red-team trial: an address only a <c>local</c> route covers is on no interface, and a network
    /// entry covering it reached the service listening on <c>[::]</c> on the parent.</summary>
    /// <remarks>A local route of table 100, which only a rule leads to, is not among the routes egress-host reads; a
    /// network-engineer trial reached the listener through one. egress-host asks the kernel for the route to it.</remarks>
    [TestCase("2001:db8:5::77", AnyIPv6)]
    [TestCase("198.19.250.77", AnyIPv4)]
    [TestCase("2001:db8:9::77", RuledIPv6 + " in table 100")]
    [TestCase("198.19.251.77", RuledIPv4 + " in table 100")]
    public async Task AnAddressALocalRouteDeliversToTheParentDoesNotReachIt(string address, string route)
    {
        var nc = await Clients.NcAsync(Topology.Enclave, [], "-N", "-w", "5", address, $"{ParentPort}");
        string endpoint = address.Contains(':') ? $"[{address}]:{ParentPort}" : $"{address}:{ParentPort}";
        var denied = await LogLineAsync(Deployment.Host, endpoint, $"denied: an address of the parent itself (interface lo, local route {route})");

        Assert.Multiple(() =>
        {
            Assert.That(nc.StandardOutput, Does.Not.Contain("PARENT-LOCAL"), nc.ToString);
            Assert.That(denied, Is.Not.Null, () => $"egress-host did not deny an address it delivers locally:\n{Deployment.Host.Output}");
        });
    }

    /// <summary>A local route added while egress-host runs counts at once, whether the route dump finds it (the local
    /// table) or only the lookup does (a rule to table 101). Only address changes started a re-read: the route dump
    /// and the answer of the first connection's lookup ("not the parent") were kept up to 30 s, and the second
    /// connection reached the parent's listener.</summary>
    [TestCase("198.18.0.11", false)]
    [TestCase("2001:db8::10", true)]
    public async Task ALocalRouteAddedWhileTheHostsRunCountsAtOnce(string address, bool byRule)
    {
        Assert.That(address, Is.EqualTo(WorldAddresses.Unlisted.ToString()).Or.EqualTo(WorldAddresses.AllowedV6.ToString()));
        string family = address.Contains(':') ? "-6" : "-4";
        string prefix = address + (address.Contains(':') ? "/128" : "/32");
        string endpoint = address.Contains(':') ? $"[{address}]:{ParentPort}" : $"{address}:{ParentPort}";
        var before = await Clients.NcAsync(Topology.Enclave, "before\n"u8.ToArray(), "-N", "-w", "5", address, $"{WorldPorts.Echo}");
        Assert.That((before.ExitCode, before.StandardOutput), Is.EqualTo((0, "before\n")), () => $"the world address is not reached first: {before}");

        string[] route = byRule ? ["local", prefix, "dev", "lo", "table", "101"] : ["local", prefix, "dev", "lo"];
        await Command.RunCheckedAsync(["ip", "-n", Topology.Parent, family, "route", "add", .. route]);
        if (byRule)
        {
            await Command.RunCheckedAsync("ip", "-n", Topology.Parent, family, "rule", "add", "to", prefix, "lookup", "101");
        }

        try
        {
            var after = await Clients.NcAsync(Topology.Enclave, [], "-N", "-w", "5", address, $"{ParentPort}");
            var denied = await LogLineAsync(Deployment.Host, endpoint,
                $"denied: an address of the parent itself (interface lo, local route {prefix}{(byRule ? " in table 101" : "")})");
            var changed = byRule ? "a rule changes no address or route read, only the lookups" : await LogLineAsync(Deployment.Host, "this machine's own addresses changed", $"local route {prefix} (lo)");

            Assert.Multiple(() =>
            {
                Assert.That(after.StandardOutput, Does.Not.Contain("PARENT-LOCAL"), after.ToString);
                Assert.That(denied, Is.Not.Null, () => $"egress-host did not deny an address it delivers locally since a moment ago:\n{Deployment.Host.Output}");
                Assert.That(changed, Is.Not.Null, () => $"the changed set is not logged:\n{Deployment.Host.Output}");
            });
        }
        finally
        {
            if (byRule)
            {
                await Command.RunAsync(["ip", "-n", Topology.Parent, family, "rule", "del", "to", prefix, "lookup", "101"], Clients.Timeout);
            }

            await Command.RunAsync(["ip", "-n", Topology.Parent, family, "route", "del", .. route], Clients.Timeout);
        }
    }

    [Test]
    public async Task TheWorldBehindTheSameNetworkEntryIsStillReached()
    {
        var echo = await Clients.NcAsync(Topology.Enclave, "still here\n"u8.ToArray(), "-N", "-w", "5", WorldAddresses.AllowedV6.ToString(), $"{WorldPorts.Echo}");

        Assert.That((echo.ExitCode, echo.StandardOutput), Is.EqualTo((0, "still here\n")), echo.ToString);
    }
}
