using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Egress.Gateway;
using Egress.Enclave.Rules;
using Egress.Policy;
using Egress.Proxy;
using Egress.Relay;
using Egress.Tests.Gateway;
using Egress.Tests.Interception;
using Egress.Tunnel;

namespace Egress.Tests.Proxy;

/// <summary>
/// The whole path as in production, on one machine: a client inside a private network namespace set up like an
/// enclave (routes via lo, the <see cref="RedirectRules"/> DNAT), the <see cref="EgressProxy"/> listening inside it,
/// a Unix-socket tunnel (reachable from every namespace) to a <see cref="TunnelGateway"/> in the root namespace, and
/// the destination: a server on this machine's own non-loopback address in the root namespace. Inside the enclave
/// namespace that address is just another outbound destination (DNAT'd to the proxy); in the root namespace it is
/// local, so the gateway's dial never leaves the machine. Denied destinations are never dialed. Run twice: with the
/// library's defaults, and as both hosts run (<paramref name="asTheHostsRun"/>: handlers start on the accepting thread
/// and relays end on their epoll thread), so that egress-enclave's accept-thread path is covered in process too.
/// </summary>
/// <param name="asTheHostsRun">Both proxies' <c>HandlersOnAcceptThread</c> and <c>EndOnEpollThread</c> on.</param>
[TestFixture(false)]
[TestFixture(true)]
public sealed class EgressProxyNamespaceTests(bool asTheHostsRun)
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);
    private static readonly IPEndPoint NeverDialed = new(IPAddress.Parse("198.51.100.8"), 80);

    private NetworkNamespace? _namespace;
    private IPAddress _hostAddress = null!;
    private int _proxyPort;
    private string _directory = null!;
    private LogCapture _enclaveLogs = null!;
    private LogCapture _hostLogs = null!;
    private TunnelGateway? _gateway;
    private EgressProxy? _proxy;

    [OneTimeSetUp]
    public void CreateEnclaveNamespace()
    {
        if (NetworkNamespace.Unavailability() is { } reason)
        {
            Assert.Ignore($"SKIPPED: the proxy's end-to-end DNAT tests did not run: {reason}.");
        }

        _hostAddress = NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus == OperationalStatus.Up && n.NetworkInterfaceType != NetworkInterfaceType.Loopback)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses)
            .Select(a => a.Address)
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a))!;
        if (_hostAddress is null)
        {
            Assert.Ignore("SKIPPED: the proxy's end-to-end DNAT tests did not run: this machine has no non-loopback IPv4 address to serve as a local destination.");
        }

        _namespace = NetworkNamespace.Create();
        _proxyPort = _namespace.InNamespace(() =>
        {
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            return ((IPEndPoint)probe.LocalEndPoint!).Port;
        });
        foreach (RedirectRule rule in RedirectRules.For(_proxyPort))
        {
            _namespace.Run([rule.Program, .. rule.Add]);
        }
    }

    [OneTimeTearDown]
    public void DeleteEnclaveNamespace() => _namespace?.Dispose();

    [SetUp]
    public void CreateDirectory()
    {
        _directory = Directory.CreateTempSubdirectory("egress-e2e-").FullName;
        _enclaveLogs = new LogCapture();
        _hostLogs = new LogCapture();
    }

    [TearDown]
    public async Task StopEverything()
    {
        if (_proxy is not null)
        {
            await _proxy.DisposeAsync();
            _proxy = null;
        }

        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
            _gateway = null;
        }

        _enclaveLogs.Dispose();
        _hostLogs.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Test]
    public async Task AllowedDestinationIsRelayedBothWaysWithHalfClose()
    {
        using var server = new EchoServer(_hostAddress);
        TunnelEndpoint tunnel = StartGateway([_hostAddress.ToString()]);
        StartProxy(tunnel, [_hostAddress.ToString()]);
        byte[] request = Encoding.ASCII.GetBytes("GET / HTTP/1.0\r\n\r\n");

        using Socket client = await ConnectFromEnclaveAsync(server.EndPoint);
        await client.SendAsync(request);
        client.Shutdown(SocketShutdown.Send);
        byte[] echoed = await TunnelWire.ReadToEndAsync(client).WaitAsync(HangGuard);

        Assert.That(echoed, Is.EqualTo(request));
        Assert.That(await server.Served.WaitAsync(HangGuard), Is.EqualTo(request.Length));
        Assert.That(
            await _enclaveLogs.WaitForLineAsync(" allowed: "),
            Does.Match($"^Information: connection to {Regex.Escape(server.EndPoint.ToString())} allowed: static entry \"{Regex.Escape(_hostAddress.ToString())}\", conn [0-9a-f]{{16}}$"));
        await _enclaveLogs.WaitForEventAsync(110);
        Assert.That(_enclaveLogs.Values(110, "Cause"), Is.EqualTo(new[] { "BothCompleted" }));
        Assert.That(_enclaveLogs.Values(110, "Ends"), Is.EqualTo(new[] { "sent FIN, received FIN" }), "a clean version 2 stream");
        Assert.That(_enclaveLogs.Values(110, "BytesOut"), Is.EqualTo(new[] { $"{request.Length}" }));
        Assert.That((await _hostLogs.WaitForEventAsync(203)).GetStructuredStateValue("Destination"), Is.EqualTo($"{server.EndPoint}"));
        Assert.That(_enclaveLogs.Values(105, "ConnectionId").Single(), Does.Match("^[0-9a-f]{16}$"), "the id alone, as the audit record's connection_id");
        Assert.That(_hostLogs.Values(203, "ConnectionId"), Is.EqualTo(_enclaveLogs.Values(105, "ConnectionId")), "both hosts log the same connection id");
    }

    [Test]
    public async Task ServerSpeaksFirstWithoutTheClientSendingAnything()
    {
        byte[] banner = Encoding.ASCII.GetBytes("220 smtp.example ESMTP ready\r\n");
        using var server = new EchoServer(_hostAddress, banner);
        TunnelEndpoint tunnel = StartGateway([_hostAddress.ToString()]);
        StartProxy(tunnel, [_hostAddress.ToString()]);

        using Socket client = await ConnectFromEnclaveAsync(server.EndPoint);
        var received = new byte[banner.Length];
        await TunnelWire.ReadExactlyAsync(client, received).WaitAsync(HangGuard);

        Assert.That(received, Is.EqualTo(banner));
    }

    [Test]
    public async Task DeniedByTheEnclavePolicyIsResetWithoutOpeningATunnel()
    {
        TunnelEndpoint tunnel = StartGateway(["*"]);
        StartProxy(tunnel, [_hostAddress.ToString()]);
        var destination = new IPEndPoint(IPAddress.Parse("198.51.100.7"), 80);

        await AssertResetAsync(destination);
        Assert.That((await _enclaveLogs.WaitForEventAsync(104)).GetStructuredStateValue("Destination"), Is.EqualTo("198.51.100.7:80"));
        Assert.That(_hostLogs.EventIds, Has.None.InRange(202, 204), "no tunnel stream reached the gateway");
    }

    [Test]
    public async Task DeniedByTheParentIsResetAndLoggedWithTheParentsReason()
    {
        TunnelEndpoint tunnel = StartGateway([_hostAddress.ToString()]);
        StartProxy(tunnel, [NeverDialed.Address.ToString()]);

        await AssertResetAsync(NeverDialed);
        await _enclaveLogs.WaitForEventAsync(106);
        Assert.That(_enclaveLogs.Values(106, "Status"), Is.EqualTo(new[] { "DeniedByPolicy" }));
        Assert.That(_enclaveLogs.Values(106, "Detail"), Is.EqualTo(new[] { "parent: denied: never learned from an allowed name" }), "the parent's reason");
    }

    [Test]
    public async Task TunnelDownIsResetAndLoggedAsUnavailable()
    {
        var tunnel = TunnelEndpoint.Parse($"unix:{_directory}/nobody-listens.sock");
        StartProxy(tunnel, [NeverDialed.Address.ToString()]);

        await AssertResetAsync(NeverDialed);
        Assert.That((await _enclaveLogs.WaitForEventAsync(109)).GetStructuredStateValue("Tunnel"), Is.EqualTo(tunnel.ToString()));
    }

    [Test]
    public async Task ParentThatNeverAnswersIsResetAfterTheStatusTimeout()
    {
        var tunnel = TunnelEndpoint.Parse($"unix:{_directory}/silent.sock");
        using Socket silent = tunnel.Listen();
        var accepted = silent.AcceptAsync();
        StartProxy(tunnel, [NeverDialed.Address.ToString()], statusTimeout: TimeSpan.FromMilliseconds(300));

        Task reset = AssertResetAsync(NeverDialed);
        using Socket stream = await accepted.WaitAsync(HangGuard);

        await reset;
        Assert.That((await _enclaveLogs.WaitForEventAsync(108)).GetStructuredStateValue("TimeoutMs"), Is.EqualTo("300"));
    }

    [Test]
    public async Task StopDrainsThenAbortsALiveRelay()
    {
        using var server = new EchoServer(_hostAddress);
        TunnelEndpoint tunnel = StartGateway([_hostAddress.ToString()]);
        StartProxy(tunnel, [_hostAddress.ToString()], drain: TimeSpan.FromMilliseconds(100));
        using Socket client = await ConnectFromEnclaveAsync(server.EndPoint);
        await client.SendAsync("x"u8.ToArray());
        await TunnelWire.ReadExactlyAsync(client, new byte[1]).WaitAsync(HangGuard);

        await _proxy!.StopAsync().WaitAsync(HangGuard);

        await AssertResetAsync(client);
        Assert.That((await _enclaveLogs.WaitForEventAsync(110)).GetStructuredStateValue("Cause"), Is.EqualTo("Cancelled"));
    }

    /// <summary>Connects from the enclave and expects a reset: on loopback the RST can beat the connect's completion.</summary>
    private async Task AssertResetAsync(IPEndPoint destination)
    {
        Socket client = _namespace!.InNamespace(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        using (client)
        {
            var error = Assert.ThrowsAsync<SocketException>(async () =>
            {
                await client.ConnectAsync(destination).WaitAsync(HangGuard);
                await client.ReceiveAsync(new byte[64]).WaitAsync(HangGuard);
            });
            Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionReset), "the application sees RST, not a clean end");
        }
    }

    private static async Task AssertResetAsync(Socket client)
    {
        var error = Assert.ThrowsAsync<SocketException>(async () => await client.ReceiveAsync(new byte[64]).WaitAsync(HangGuard));
        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionReset), "the application sees RST, not a clean end");
    }

    private TunnelEndpoint StartGateway(string[] destinations)
    {
        var tunnel = TunnelEndpoint.Parse($"unix:{_directory}/tunnel.sock");
        var options = new TunnelGatewayOptions
        {
            Listen = tunnel,
            ConnectTimeout = TimeSpan.FromSeconds(2),
            HandlersOnAcceptThread = asTheHostsRun,
            Relay = RelayOptions.Default with { EndOnEpollThread = asTheHostsRun },
        };
        _gateway = new TunnelGateway(options, Policy(destinations), _hostLogs.Factory);
        _gateway.Start();
        return tunnel;
    }

    private void StartProxy(TunnelEndpoint tunnel, string[] destinations, TimeSpan? statusTimeout = null, TimeSpan? drain = null)
    {
        var options = new EgressProxyOptions
        {
            Listen = [new IPEndPoint(IPAddress.Loopback, _proxyPort)],
            Tunnel = tunnel,
            StatusTimeout = statusTimeout ?? TimeSpan.FromSeconds(5),
            ShutdownDrain = drain ?? TimeSpan.FromSeconds(5),
            HandlersOnAcceptThread = asTheHostsRun,
            Relay = RelayOptions.Default with { EndOnEpollThread = asTheHostsRun },
        };
        _proxy = new EgressProxy(options, Policy(destinations), _enclaveLogs.Factory);
        // The listening socket is created by Start: run it inside the namespace (a socket keeps its namespace).
        _namespace!.InNamespace(() =>
        {
            _proxy.Start();
            return 0;
        });
    }

    private async Task<Socket> ConnectFromEnclaveAsync(IPEndPoint destination)
    {
        Socket client = _namespace!.InNamespace(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        try
        {
            await client.ConnectAsync(destination).WaitAsync(HangGuard);
            return client;
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    private static EgressPolicy Policy(string[] destinations) =>
        EgressPolicy.Create(true, destinations, new AllowlistCache(new AllowlistCacheOptions()));
}
