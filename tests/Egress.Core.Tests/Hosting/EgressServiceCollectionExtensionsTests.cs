using System.Net;
using System.Net.Sockets;
using Egress.Configuration;
using Egress.Hosting;
using Egress.Policy;
using Egress.Tests.Gateway;
using Egress.Tunnel;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Egress.Tests.Hosting;

/// <summary>
/// The Generic Host registration both hosts use: each side composed from an enclave.toml, its listeners started and
/// stopped with the host, and the failures a consumer sees (a bad entry at registration, a bind failure at start).
/// </summary>
public sealed class EgressServiceCollectionExtensionsTests
{
    private string _directory = null!;

    [SetUp]
    public void SetUp() => _directory = Directory.CreateTempSubdirectory("egress-hosting-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_directory, recursive: true);

    /// <summary>Starts egress-enclave's services with the given proxy_listen (one endpoint) and dns_listen (the TOML
    /// array's elements), where a start is expected to fail, and returns the failure.</summary>
    private async Task<IOException?> EnclaveStartFailureAsync(string proxyListen, string dnsListenElements)
    {
        var configuration = EgressConfiguration.Parse(
            $"[enclave]\nproxy_listen = [\"{proxyListen}\"]\ndns_listen = [{dnsListenElements}]\n[tunnel]\nenclave_endpoint = \"unix:/nonexistent/t.sock\"\n",
            "enclave.toml");
        using var host = Build(services => services.AddEgressEnclave(configuration));

        var failure = Assert.ThrowsAsync<IOException>(() => host.StartAsync());
        await host.StopAsync();
        return failure;
    }

    [Test]
    public async Task TheHostSideServesTunnelStreamsWhileTheHostRuns()
    {
        using var echo = new EchoServer(IPAddress.Loopback);
        var tunnel = TunnelEndpoint.Parse("unix:" + Path.Combine(_directory, "t.sock"));
        var configuration = EgressConfiguration.Parse("[egress]\nenabled = true\ndestinations = [\"127.0.0.1\"]\n", "enclave.toml");
        using var host = Build(services => services.AddEgressHost(configuration, tunnel));

        await host.StartAsync();
        var client = new TunnelClient(tunnel);
        var allowed = await client.ConnectAsync(echo.EndPoint, null, CancellationToken.None);
        var denied = await client.ConnectAsync(new IPEndPoint(IPAddress.Parse("169.254.169.254"), 80), null, CancellationToken.None);
        allowed.Socket?.Dispose();
        await host.StopAsync();

        Assert.Multiple(() =>
        {
            Assert.That(allowed.Error, Is.EqualTo(TunnelConnectError.None), allowed.ToString());
            Assert.That(denied.Status, Is.EqualTo(TunnelStatus.DeniedByPolicy), denied.ToString());
            Assert.That(host.Services.GetRequiredService<EgressPolicy>().CheckAddress(IPAddress.Loopback).IsAllowed, Is.True, "the policy is the registered one");
        });
    }

    [Test]
    public async Task BothSidesInOneContainerKeepTheirOwnPolicies()
    {
        // The parent side, added first, allows 127.0.0.1; the enclave side, added after it, does not. Were the parent
        // to resolve the container's last-registered policy, it would use the enclave's and deny.
        using var echo = new EchoServer(IPAddress.Loopback);
        var tunnel = TunnelEndpoint.Parse("unix:" + Path.Combine(_directory, "t.sock"));
        var enclave = EgressConfiguration.Parse("[egress]\nenabled = true\ndestinations = [\"api.example.test\"]\n", "enclave.toml");
        var parent = EgressConfiguration.Parse("[egress]\nenabled = true\ndestinations = [\"127.0.0.1\"]\n", "parent.toml");
        var services = new ServiceCollection().AddEgressHost(parent, tunnel).AddEgressEnclave(enclave, tunnel);
        await using var provider = services.BuildServiceProvider();

        var gateway = provider.GetRequiredService<Egress.Gateway.TunnelGateway>();
        gateway.Start();
        var result = await new TunnelClient(tunnel).ConnectAsync(echo.EndPoint, null, CancellationToken.None);
        result.Socket?.Dispose();
        await gateway.StopAsync();

        Assert.Multiple(() =>
        {
            Assert.That(result.Error, Is.EqualTo(TunnelConnectError.None), result.ToString());
            Assert.That(provider.GetRequiredService<EgressPolicy>().CheckAddress(IPAddress.Loopback).IsAllowed, Is.True, "the container's policy is the first side's");
        });
    }

    /// <summary>A library user's trial: AddEgressHost twice failed only at StartAsync, with "this TunnelGateway was
    /// started already", naming neither the call nor the cause.</summary>
    [Test]
    public void AddingASideTwiceIsRefusedAtTheSecondCall()
    {
        var tunnel = TunnelEndpoint.Parse("unix:" + Path.Combine(_directory, "t.sock"));
        var services = new ServiceCollection().AddEgressHost(EgressConfiguration.Default, tunnel).AddEgressEnclave(EgressConfiguration.Default, tunnel);

        var host = Assert.Throws<InvalidOperationException>(() => services.AddEgressHost(EgressConfiguration.Default, tunnel));
        var enclave = Assert.Throws<InvalidOperationException>(() => services.AddEgressEnclave(EgressConfiguration.Default, tunnel));
        Assert.Multiple(() =>
        {
            Assert.That(host!.Message, Does.StartWith("AddEgressHost was called already"));
            Assert.That(enclave!.Message, Does.StartWith("AddEgressEnclave was called already"));
        });
    }

    [Test]
    public async Task StoppingTheHostStopsTheListener()
    {
        var tunnel = TunnelEndpoint.Parse("unix:" + Path.Combine(_directory, "t.sock"));
        using var host = Build(services => services.AddEgressHost(EgressConfiguration.Default, tunnel));

        await host.StartAsync();
        await host.StopAsync();
        var result = await new TunnelClient(tunnel).ConnectAsync(new IPEndPoint(IPAddress.Loopback, 9), null, CancellationToken.None);

        Assert.That(result.Error, Is.EqualTo(TunnelConnectError.TunnelUnavailable), result.ToString());
    }

    [Test]
    public void AnExplicitTunnelEndpointIsUsedWithoutReadingTheFilesInvalidOne()
    {
        var configuration = EgressConfiguration.Parse("[tunnel]\nenclave_endpoint = \"bogus\"\n", "enclave.toml");
        var services = new ServiceCollection();

        Assert.That(() => services.AddEgressEnclave(configuration, TunnelEndpoint.Parse("tcp://127.0.0.1:4433")), Throws.Nothing);
        Assert.That(
            () => new ServiceCollection().AddEgressEnclave(configuration),
            Throws.TypeOf<ConfigurationException>().With.Message.StartWith("enclave.toml:2:"));
    }

    [Test]
    public void AnInvalidDestinationFailsTheRegistrationWithItsLocation() =>
        Assert.That(
            () => new ServiceCollection().AddEgressHost(EgressConfiguration.Parse("[egress]\ndestinations = [\"a.*.com\"]\n", "enclave.toml")),
            Throws.TypeOf<ConfigurationException>().With.Message.StartWith("enclave.toml:2:"));

    [Test]
    public async Task AnAddressInUseFailsTheStartWithAnIOExceptionNamingIt()
    {
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        var port = ((IPEndPoint)taken.LocalEndPoint!).Port;
        int dnsPort;
        using (var free = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))
        {
            free.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            dnsPort = ((IPEndPoint)free.LocalEndPoint!).Port;
        }

        IOException? failure = await EnclaveStartFailureAsync($"127.0.0.1:{port}", $"\"127.0.0.1:{dnsPort}\"");

        Assert.That(failure!.Message, Does.StartWith($"cannot listen on 127.0.0.1:{port}: "));
        Assert.That(failure.Message, Does.EndWith("(EADDRINUSE: another socket is bound there, e.g. another instance still running; `ss -ltnp` or `ss -lxp` shows which process)"));
        Assert.That(failure.InnerException, Is.InstanceOf<SocketException>());
    }

    [Test]
    public async Task AnAddressOfNoInterfaceFailsTheStartSayingSo()
    {
        // 198.51.100.7 (TEST-NET-2) is on no interface here: bind(2) gives EADDRNOTAVAIL; nothing is sent.
        var configuration = EgressConfiguration.Parse("[egress]\nenabled = true\n", "enclave.toml");
        using var host = Build(services => services.AddEgressHost(configuration, TunnelEndpoint.Parse("tcp://198.51.100.7:4433")));

        var failure = Assert.ThrowsAsync<IOException>(() => host.StartAsync());
        await host.StopAsync();

        Assert.That(failure!.Message, Does.StartWith("cannot listen on tcp://198.51.100.7:4433: ").And.Contains("(EADDRNOTAVAIL: the address is not one of this machine's or this network namespace's"));
    }

    // An operator's trial: a dns_listen address on no interface failed with "...: Cannot assign requested address; is
    // another resolver (systemd-resolved, dnsmasq) bound there?", a question for EADDRINUSE only.
    [Test]
    public async Task ADnsListenAddressOfNoInterfaceFailsTheStartSayingSo()
    {
        // 198.51.100.7 (TEST-NET-2) is on no interface here: bind(2) gives EADDRNOTAVAIL; nothing is sent.
        int proxyPort;
        using (var free = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            free.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            proxyPort = ((IPEndPoint)free.LocalEndPoint!).Port;
        }

        IOException? failure = await EnclaveStartFailureAsync($"127.0.0.1:{proxyPort}", $"\"198.51.100.7:5353\"");

        Assert.That(failure!.Message, Does.StartWith("cannot listen for DNS on 198.51.100.7:5353 (UDP and TCP): "));
        Assert.That(failure.Message, Does.EndWith("(EADDRNOTAVAIL: the address is not one of this machine's or this network namespace's; listen on one that `ip address` shows, or 0.0.0.0 / [::])"));
        Assert.That(failure.Message, Does.Not.Contain("another resolver"));
    }

    /// <summary>A trial: with port 53 taken on 127.0.0.1 only, the error named every dns_listen address.</summary>
    [Test]
    public async Task ADnsBindFailureNamesTheOneAddressThatFailed()
    {
        int FreePort(SocketType type, ProtocolType protocol)
        {
            using var free = new Socket(AddressFamily.InterNetwork, type, protocol);
            free.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            return ((IPEndPoint)free.LocalEndPoint!).Port;
        }

        // The forwarder binds UDP and TCP on the one port, so the free one must be free for both; a port of the ephemeral
        // range (what binding port 0 gives) could be taken for TCP meanwhile by another test's outgoing connection (a
        // run failed so, naming the free port), so it is taken below that range (32768 on Linux by default).
        int FreeForUdpAndTcp()
        {
            for (int attempt = 0; ; attempt++)
            {
                int port = Random.Shared.Next(20000, 32000);
                using var udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
                using var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                try
                {
                    udp.Bind(new IPEndPoint(IPAddress.Loopback, port));
                    tcp.Bind(new IPEndPoint(IPAddress.Loopback, port));
                    return port;
                }
                catch (SocketException) when (attempt < 50)
                {
                }
            }
        }

        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        int takenPort = ((IPEndPoint)taken.LocalEndPoint!).Port;
        int freePort = FreeForUdpAndTcp();
        IOException? failure = await EnclaveStartFailureAsync($"127.0.0.1:{FreePort(SocketType.Stream, ProtocolType.Tcp)}", $"\"127.0.0.1:{freePort}\", \"127.0.0.1:{takenPort}\"");

        Assert.That(failure!.Message, Does.StartWith($"cannot listen for DNS on 127.0.0.1:{takenPort} (UDP and TCP): "));
        Assert.That(failure.Message, Does.Contain("another resolver").And.Not.Contain($":{freePort}"));
    }

    [Test]
    public void AMappedFileThatIsMissingIsLocatedAtItsConfigValue()
    {
        string main = Path.Combine(_directory, "enclave.toml");
        var configuration = EgressConfiguration.Parse("[[host.enclaves]]\ncid = \"any\"\nconfig = \"missing.toml\"\n", main);
        var tunnel = TunnelEndpoint.Parse("unix:" + Path.Combine(_directory, "t.sock"));

        Assert.That(
            () => new ServiceCollection().AddEgressHost(configuration, tunnel),
            Throws.TypeOf<ConfigurationException>().With.Message.StartWith(main + ":3:10: error: cannot read \"" + Path.Combine(_directory, "missing.toml") + "\""));
    }

    [Test]
    public void AMappedDirectoryIsSaidToBeADirectoryNotAPermissionProblem()
    {
        var configuration = EgressConfiguration.Parse($"[[host.enclaves]]\ncid = \"any\"\nconfig = \"{_directory}\"\n", "enclave.toml");
        var tunnel = TunnelEndpoint.Parse("unix:" + Path.Combine(_directory, "t.sock"));

        Assert.That(
            () => new ServiceCollection().AddEgressHost(configuration, tunnel),
            Throws.TypeOf<ConfigurationException>().With.Message.Contains($"{_directory} is a directory, not a configuration file").And.Message.Not.Contains("denied"));
    }

    [Test]
    public void LoadingADirectoryThrowsIOExceptionThatSaysSo() =>
        Assert.That(() => EgressConfiguration.Load(_directory), Throws.TypeOf<IOException>().With.Message.EqualTo($"{_directory} is a directory, not a configuration file (enclave.toml)"));

    // Before, --config /dev/zero grew the process without end (1.6 GB in 10 s) and never answered.
    [Test]
    public void LoadingAFileThatNeverEndsStopsAtTheBoundAndSaysSo() =>
        Assert.That(
            () => EgressConfiguration.Load("/dev/zero"),
            Throws.TypeOf<IOException>().With.Message.EqualTo("/dev/zero is larger than 64 MiB; an enclave.toml is a few KiB (100,000 destinations are about 3 MiB)"));

    [Test]
    public void LoadingReadsAFileWithAByteOrderMarkAsBefore()
    {
        string path = Path.Combine(_directory, "bom.toml");
        File.WriteAllText(path, "[egress]\nenabled = true\ndestinations = [\"api.example.com\"]\n", new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: true));

        Assert.That(EgressConfiguration.Load(path).Egress.Destinations.Select(d => d.ToString()), Is.EqualTo(new[] { "api.example.com" }));
    }

    [TestCase("unix:")]
    [TestCase("tcp://127.0.0.1:9")]
    public void EntriesByCidOnATunnelWithoutPeerCidsAreRefusedAtRegistration(string transport)
    {
        string mapped = Path.Combine(_directory, "a.toml");
        File.WriteAllText(mapped, "[egress]\nenabled = true\n");
        var configuration = EgressConfiguration.Parse($"[[host.enclaves]]\ncid = 16\nconfig = \"{mapped}\"\n", "enclave.toml");
        var tunnel = TunnelEndpoint.Parse(transport == "unix:" ? "unix:" + Path.Combine(_directory, "t.sock") : transport);

        Assert.That(
            () => new ServiceCollection().AddEgressHost(configuration, tunnel),
            Throws.TypeOf<ConfigurationException>().With.Message.StartWith("enclave.toml:2:1: error: the tunnel endpoint ").And.Message.Contains("gives no peer CID").And.Message.Contains("cid = \"any\""));
    }

    [Test]
    public void EntriesByCidWithAnAnyEntryAreAcceptedOnAUnixTunnel()
    {
        string mapped = Path.Combine(_directory, "a.toml");
        File.WriteAllText(mapped, "[egress]\nenabled = true\n");
        var configuration = EgressConfiguration.Parse($"[[host.enclaves]]\ncid = 16\nconfig = \"{mapped}\"\n[[host.enclaves]]\ncid = \"any\"\nconfig = \"{mapped}\"\n", "enclave.toml");
        var tunnel = TunnelEndpoint.Parse("unix:" + Path.Combine(_directory, "t.sock"));

        Assert.That(() => new ServiceCollection().AddEgressHost(configuration, tunnel), Throws.Nothing);
    }

    // Before, egress-host wrote the warnings of its own file only: a mapped file that denies everything or opens internal
    // ranges started without a word.
    [Test]
    public void EachMappedFilesWarningsAreHandedOnOnceLocatedInIt()
    {
        string wide = Path.Combine(_directory, "w2.toml");
        string empty = Path.Combine(_directory, "w3.toml");
        File.WriteAllText(wide, "[egress]\nenabled = true\ndestinations = [\"0.0.0.0/1\", \"*.com\"]\n");
        File.WriteAllText(empty, "[egress]\nenabled = true\n");
        var configuration = EgressConfiguration.Parse(
            "[[host.enclaves]]\ncid = \"any\"\nconfig = \"w2.toml\"\n[[host.enclaves]]\ncid = 16\nconfig = \"w3.toml\"\n[[host.enclaves]]\ncid = 17\nconfig = \"w2.toml\"\n",
            Path.Combine(_directory, "h2.toml"));
        var tunnel = TunnelEndpoint.Parse("unix:" + Path.Combine(_directory, "t.sock"));
        var warnings = new List<string>();

        new ServiceCollection().AddEgressHost(configuration, tunnel, null, warnings.Add);

        Assert.That(warnings, Is.EqualTo(EgressConfiguration.Load(wide).GetWarnings().Concat(EgressConfiguration.Load(empty).GetWarnings())));
        Assert.That(warnings, Has.Count.EqualTo(3));
        Assert.That(warnings[0], Does.StartWith(wide + ":3:17: warning: destination \"0.0.0.0/1\" also allows internal ranges it does not name: "));
        Assert.That(warnings[2], Does.StartWith(empty + ":2:11: warning: egress.enabled = true with no destinations"));
    }

    private static IHost Build(Action<IServiceCollection> configure)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddMetrics();
        configure(builder.Services);
        return builder.Build();
    }
}
