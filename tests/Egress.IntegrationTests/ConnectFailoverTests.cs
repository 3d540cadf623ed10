using System.Net;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// A name with two A records, the first refusing (a dead backend): clients that fall over to the next address on
/// ECONNREFUSED (Python's <c>socket.create_connection</c>, curl) cannot, because their connect() to the enclave's
/// proxy always succeeds; the proxy falls over for them (<c>enclave.failover_attempts</c>). The world kernel resets
/// every TCP connection to <see cref="WorldAddresses.Refusing"/>, so the parent's dial is refused as it would be by a
/// host with nothing listening.
/// </summary>
[TestFixture]
public sealed class ConnectFailoverTests : EgressFixture
{
    private const string Name = "failover.allowed.test";
    private const int Tries = 10;

    internal override string ConfigToml => EnclaveConfig.Render([Name, WorldAddresses.Allowed.ToString()]);

    internal override async Task PrepareAsync(Topology topology)
    {
        // The refusing address first: resolvers keep the answer's order here, so every client tries it first.
        await topology.StartDnsmasqAsync(DnsmasqRecord.Host(Name, WorldAddresses.Refusing), DnsmasqRecord.Host(Name, WorldAddresses.Unlisted));
        topology.SetEnclaveNameserver(IPAddress.Loopback);
        await Command.RunCheckedAsync("ip", "netns", "exec", topology.World,
            "iptables", "-w", "-I", "INPUT", "-d", $"{WorldAddresses.Refusing}", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset");
    }

    [Test]
    public async Task PythonCreateConnectionReachesTheNamesServingAddressEveryTime()
    {
        var python = await Clients.EchoConnectionsAsync(Topology.Enclave, Name, WorldPorts.Echo, Tries, TimeSpan.FromSeconds(60));
        var failedOver = await LogLineAsync(
            Deployment.Enclave,
            $"connection to {WorldAddresses.Refusing}:{WorldPorts.Echo}: the destination answered ConnectionRefused, conn ", // the refused attempt's id, as the parent logged it
            $"; failing over to {WorldAddresses.Unlisted}:{WorldPorts.Echo}, also learned from {Name}");

        Assert.Multiple(() =>
        {
            Assert.That(python.StandardOutput, Does.Contain($"ok {Tries} of {Tries}"), python.ToString);
            Assert.That(failedOver, Is.Not.Null, () => $"no failover logged:\n{Deployment.Enclave.Output}");
        });
    }

    [Test]
    public async Task CurlSentToTheRefusingAddressGetsThePage()
    {
        // curl's own address order varies (it sorts and may start with either): pin it to the refusing address, as an
        // app that cached it would, after the name was resolved through the forwarder.
        await Clients.DigAsync(Topology.Enclave, Name);

        var curl = await Clients.CurlAsync(Topology.Enclave, $"http://{Name}/", "--resolve", $"{Name}:80:{WorldAddresses.Refusing}", "-o", "/dev/null", "-w", "%{http_code} %{remote_ip}");

        Assert.That((curl.ExitCode, curl.StandardOutput), Is.EqualTo((0, $"200 {WorldAddresses.Refusing}")), curl.ToString);
    }

    [Test]
    public async Task AppConnectingToTheRefusingAddressItResolvedIsServed()
    {
        await Clients.DigAsync(Topology.Enclave, Name);

        var echo = await Clients.NcAsync(Topology.Enclave, "hello\n"u8.ToArray(), "-N", "-w", "5", WorldAddresses.Refusing.ToString(), $"{WorldPorts.Echo}");

        Assert.That((echo.ExitCode, echo.StandardOutput), Is.EqualTo((0, "hello\n")), echo.ToString);
    }

    [Test]
    public async Task AnAddressOfNoNameIsNotFailedOver()
    {
        // An IP-literal entry has no name to fall over within: the app still gets the reset, and nothing else is tried.
        var curl = await Clients.CurlAsync(Topology.Enclave, $"http://{WorldAddresses.Allowed}:{WorldPorts.Closed}/");

        Assert.That(Clients.RefusedOrReset, Does.Contain(curl.ExitCode), curl.ToString);
        Assert.That(Deployment.Enclave.Output, Does.Not.Contain($"failing over to {WorldAddresses.Allowed}"));
    }
}
