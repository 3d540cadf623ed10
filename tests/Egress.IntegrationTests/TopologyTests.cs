using System.Net;
using System.Net.Sockets;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// The harness itself, without the hosts: the namespaces, the world servers as seen from the parent, the enclave's
/// isolation before any rule, dnsmasq, and teardown.
/// </summary>
[TestFixture]
public sealed class TopologyTests
{
    private Topology topology = null!;
    private WorldServices world = null!;

    [OneTimeSetUp]
    public async Task StartTopology()
    {
        Root.RequireOrIgnore();
        topology = await Topology.CreateAsync();
        world = await topology.StartWorldServicesAsync();
        await topology.StartDnsmasqAsync(
            DnsmasqRecord.Host("api.example.test", WorldAddresses.Allowed), DnsmasqRecord.Host("api.example.test", WorldAddresses.AllowedV6));
    }

    [OneTimeTearDown]
    public async Task StopTopology()
    {
        if (topology is not null)
        {
            await topology.DisposeAsync();
            Assert.That(await ResourceLedger.ListNamespacesAsync(), Has.None.AnyOf(topology.Enclave, topology.Parent, topology.World));
        }
    }

    [Test]
    public async Task EnclaveNamespaceHasOnlyLoopbackAndNoRoutes()
    {
        var links = await Command.RunCheckedAsync("ip", "-n", topology.Enclave, "-o", "link", "show");
        var routes = await Command.RunCheckedAsync("ip", "-n", topology.Enclave, "route", "show");
        var routes6 = await Command.RunCheckedAsync("ip", "-n", topology.Enclave, "-6", "route", "show");
        Assert.Multiple(() =>
        {
            Assert.That(links.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => line.Split(": ")[1]), Is.EqualTo(new[] { "lo" }));
            Assert.That(routes, Is.Empty);
            Assert.That(routes6, Is.Empty);
        });
    }

    [TestCase("198.18.0.10", 80)]
    [TestCase("198.18.0.10", 8080)]
    [TestCase("[2001:db8::10]", 80)]
    [TestCase("[2001:db8::10]", 8080)]
    [TestCase("198.18.1.20", 80)]
    [TestCase("198.18.0.99", 80)]
    [TestCase("169.254.169.254", 80)]
    public async Task ParentReachesNginxOnEveryWorldAddress(string host, int port)
    {
        var body = await Clients.CurlAsync(topology.Parent, $"http://{host}:{port}/", "-g");
        var whoami = await Clients.CurlAsync(topology.Parent, $"http://{host}:{port}/whoami", "-g");
        Assert.Multiple(() =>
        {
            Assert.That(body.ExitCode, Is.Zero, body.ToString);
            Assert.That(body.StandardOutput, Is.EqualTo(world.Nginx.IndexBody));
            Assert.That(whoami.StandardOutput, Is.EqualTo($"{host.Trim('[', ']')} {port}\n"));
        });
    }

    [Test]
    public async Task EchoRoundTripWithNcFromParent()
    {
        var result = await Clients.NcAsync(topology.Parent, "parent echo\n"u8.ToArray(), "-N", "-w", "5", "198.18.1.20", $"{WorldPorts.Echo}");
        Assert.That(result.StandardOutput, Is.EqualTo("parent echo\n"), result.ToString);
    }

    [Test]
    public async Task BannerArrivesWithoutTheClientSendingFromParent()
    {
        var result = await Clients.NcAsync(topology.Parent, [], "-q", "1", "198.18.0.10", $"{WorldPorts.Banner}");
        Assert.That(result.StandardOutput, Is.EqualTo(ServerBehaviours.Banner), result.ToString);
    }

    [Test]
    public async Task ReplyAfterEofFromParent()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (length, sha256) = await TransferClient.HalfCloseThenReceiveAsync(
            topology.Parent, new IPEndPoint(WorldAddresses.Allowed, WorldPorts.ReplyAfterEof), new byte[1000], cts.Token);
        Assert.Multiple(() =>
        {
            Assert.That(length, Is.EqualTo(ServerBehaviours.ReplyAfterEofLength));
            Assert.That(sha256, Is.EqualTo(DeterministicBytes.Sha256(ServerBehaviours.ReplyAfterEofSeed, ServerBehaviours.ReplyAfterEofLength)));
        });
    }

    [Test]
    public async Task Sha256SinkAndSourceFromParentOverIpv6()
    {
        const long length = 8 * 1024 * 1024 + 3;
        const ulong seed = 42;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var expected = DeterministicBytes.Sha256(seed, length);
        var sinkHash = await TransferClient.UploadAsync(topology.Parent, new IPEndPoint(WorldAddresses.AllowedV6, WorldPorts.Sha256Sink), seed, length, cts.Token);
        var (downloaded, downloadHash) = await TransferClient.DownloadAsync(topology.Parent, new IPEndPoint(WorldAddresses.AllowedV6, WorldPorts.Source), seed, length, cts.Token);
        Assert.Multiple(() =>
        {
            Assert.That(sinkHash, Is.EqualTo(expected));
            Assert.That(downloaded, Is.EqualTo(length));
            Assert.That(downloadHash, Is.EqualTo(expected));
        });
    }

    [Test]
    public async Task ClosedPortIsRefusedFromParent()
    {
        var result = await Clients.CurlAsync(topology.Parent, $"http://198.18.0.10:{WorldPorts.Closed}/");
        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(7), result.ToString);
            Assert.That(result.StandardError, Does.Contain("Could not connect").Or.Contain("Couldn't connect").Or.Contain("refused"));
        });
    }

    [Test]
    public async Task DnsmasqAnswersTheTestRecordsAndNothingElse()
    {
        var a = await Command.RunInNamespaceAsync(topology.Parent, Clients.Timeout, "dig", "+short", "+time=2", "+tries=1", "@198.18.0.53", "api.example.test", "A");
        var aaaa = await Command.RunInNamespaceAsync(topology.Parent, Clients.Timeout, "dig", "+short", "+time=2", "+tries=1", "@198.18.0.53", "api.example.test", "AAAA");
        var other = await Command.RunInNamespaceAsync(topology.Parent, Clients.Timeout, "dig", "+time=2", "+tries=1", "@198.18.0.53", "other.example.test", "A");
        Assert.Multiple(() =>
        {
            Assert.That(a.StandardOutput, Is.EqualTo("198.18.0.10\n"), a.ToString);
            Assert.That(aaaa.StandardOutput, Is.EqualTo("2001:db8::10\n"), aaaa.ToString);
            Assert.That(other.StandardOutput, Does.Contain("status: NXDOMAIN"), other.ToString);
        });
    }

    [Test]
    public async Task EnclaveCannotReachTheWorldBeforeRules()
    {
        var curl = await Clients.CurlAsync(topology.Enclave, "http://198.18.0.10/");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        var connect = Assert.ThrowsAsync<SocketException>(async () =>
        {
            using var socket = await NetworkNamespace.ConnectAsync(topology.Enclave, new IPEndPoint(WorldAddresses.Allowed, WorldPorts.Http), cts.Token);
        });
        Assert.Multiple(() =>
        {
            Assert.That(curl.ExitCode, Is.EqualTo(7), curl.ToString);
            Assert.That(connect!.SocketErrorCode, Is.EqualTo(SocketError.NetworkUnreachable));
        });
    }

    [Test]
    public async Task TeardownRemovesNamespacesVethAndProcesses()
    {
        var scratch = await Topology.CreateAsync();
        BackgroundProcess sleeper;
        try
        {
            sleeper = scratch.StartProcess("sleeper", scratch.World, "sleep", "300");
            scratch.StartWorldServer("scratch-echo", WorldPorts.Echo, ServerBehaviours.EchoAsync);
            Assert.That(await ResourceLedger.ListNamespacesAsync(), Does.Contain(scratch.Enclave).And.Contain(scratch.Parent).And.Contain(scratch.World));
        }
        finally
        {
            await scratch.DisposeAsync();
        }

        var rootLinks = await Command.RunCheckedAsync("ip", "-o", "link", "show");
        var namespaces = await ResourceLedger.ListNamespacesAsync();
        Assert.Multiple(() =>
        {
            Assert.That(namespaces, Has.None.AnyOf(scratch.Enclave, scratch.Parent, scratch.World));
            Assert.That(sleeper.HasExited, Is.True);
            Assert.That(rootLinks, Does.Not.Contain(scratch.Parent[^4..]));
            Assert.That(Directory.Exists(scratch.WorkDirectory), Is.False);
        });
    }

    [Test]
    public void WorldServersHadNoFaults()
    {
        Assert.That(world.CSharpServers.SelectMany(server => server.Faults).Select(fault => fault.ToString()), Is.Empty);
    }
}
