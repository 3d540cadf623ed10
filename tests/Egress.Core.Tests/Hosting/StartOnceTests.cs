using System.Net;
using System.Net.Sockets;
using Egress.Dns.Forwarder;
using Egress.Gateway;
using Egress.Policy;
using Egress.Proxy;
using Egress.Tunnel;
using Microsoft.Extensions.Logging.Abstractions;

namespace Egress.Tests.Hosting;

/// <summary>
/// The package's three services start once (found by a library consumer's trial): a second start used to bind a second
/// set of listeners (proxy, forwarder) or fail with "another process is accepting" (gateway), and a start after
/// DisposeAsync bound listeners that nothing could ever release. Also the options the trial showed breaking every
/// stream at run time instead of failing at construction.
/// </summary>
public sealed class StartOnceTests
{
    private string _directory = null!;
    private TunnelEndpoint _tunnel = null!;

    [SetUp]
    public void CreateDirectory()
    {
        _directory = Directory.CreateTempSubdirectory("egress-start-").FullName;
        _tunnel = TunnelEndpoint.Parse($"unix:{_directory}/tunnel.sock");
    }

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_directory, recursive: true);

    [Test]
    public async Task TheGatewayStartsOnceAndNotAfterItWasDisposed()
    {
        var gateway = new TunnelGateway(new TunnelGatewayOptions { Listen = _tunnel, DnsUpstreams = [new IPEndPoint(IPAddress.Loopback, 53)] }, Policy(), NullLoggerFactory.Instance);
        gateway.Start();

        Assert.That(gateway.Start, Throws.InvalidOperationException.With.Message.Contains("started already"));
        await gateway.DisposeAsync();
        Assert.That(gateway.Start, Throws.TypeOf<ObjectDisposedException>());
        Assert.That(File.Exists($"{_directory}/tunnel.sock"), Is.False, "nothing listens on the path after the dispose");
    }

    [Test]
    public async Task TheProxyStartsOnceAndNotAfterItWasDisposed()
    {
        var proxy = new EgressProxy(new EgressProxyOptions { Tunnel = _tunnel, Listen = [new IPEndPoint(IPAddress.Loopback, 0)] }, Policy(), NullLoggerFactory.Instance);
        proxy.Start();
        var bound = (IPEndPoint)proxy.LocalEndPoints.Single();

        Assert.That(proxy.Start, Throws.InvalidOperationException);
        Assert.That(proxy.LocalEndPoints, Is.EqualTo(new[] { bound }), "no second listener");
        await proxy.DisposeAsync();
        Assert.That(proxy.Start, Throws.TypeOf<ObjectDisposedException>());
        Assert.That(() => Connect(bound), Throws.TypeOf<SocketException>(), "nothing listens after the dispose");
    }

    [Test]
    public async Task TheForwarderStartsOnceAndNotAfterItWasDisposed()
    {
        var forwarder = new DnsForwarder(new DnsForwarderOptions { Tunnel = _tunnel, Listen = [new IPEndPoint(IPAddress.Loopback, 0)] }, Policy(), NullLoggerFactory.Instance);
        forwarder.Start();
        IPEndPoint bound = forwarder.LocalEndPoints.Single();

        Assert.That(forwarder.Start, Throws.InvalidOperationException);
        Assert.That(forwarder.LocalEndPoints, Is.EqualTo(new[] { bound }), "no second pair of sockets");
        await forwarder.DisposeAsync();
        Assert.That(forwarder.Start, Throws.TypeOf<ObjectDisposedException>(), "not the disposed token source's");
        Assert.That(() => Connect(bound), Throws.TypeOf<SocketException>(), "nothing listens after the dispose");
    }

    /// <summary>A start whose bind failed leaves nothing bound (the proxy had bound its first address before the
    /// second failed) and may be tried again (the review of the start-once rule).</summary>
    [Test]
    public async Task AProxyStartWhoseBindFailedLeavesNothingBoundAndMayBeTriedAgain()
    {
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        var busy = (IPEndPoint)taken.LocalEndPoint!;
        int free = FreePort();
        var proxy = new EgressProxy(
            new EgressProxyOptions { Tunnel = _tunnel, Listen = [new IPEndPoint(IPAddress.Loopback, free), busy] }, Policy(), NullLoggerFactory.Instance);

        var error = Assert.Throws<IOException>(proxy.Start)!;
        Assert.That(error.Message, Does.StartWith($"cannot listen on {busy}: "));
        Assert.That(error.InnerException, Is.TypeOf<SocketException>().With.Property("SocketErrorCode").EqualTo(SocketError.AddressAlreadyInUse));
        Assert.That(() => Connect(new IPEndPoint(IPAddress.Loopback, free)), Throws.TypeOf<SocketException>(), "the first address is not left bound");
        taken.Close();
        proxy.Start();
        Assert.That(proxy.LocalEndPoints, Has.Count.EqualTo(2), "the second try binds both");
        await proxy.DisposeAsync();
    }

    /// <summary>A library trial: the forwarder started by hand threw "Address already in use" alone; it names the
    /// address whose bind failed and what the error means, as the hosted path did, and binds on a second try.</summary>
    [Test]
    public async Task AForwarderStartWhoseBindFailedNamesTheAddressAndMayBeTriedAgain()
    {
        // The port held for TCP and UDP alike (the forwarder binds both): a UDP port alone may be some other test's TCP
        // port, which failed the second start now and then.
        using var takenTcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        takenTcp.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var busy = (IPEndPoint)takenTcp.LocalEndPoint!;
        using var takenUdp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        takenUdp.Bind(busy);
        var forwarder = new DnsForwarder(new DnsForwarderOptions { Tunnel = _tunnel, Listen = [busy] }, Policy(), NullLoggerFactory.Instance);

        var error = Assert.Throws<IOException>(forwarder.Start)!;
        Assert.That(error.Message, Does.StartWith($"cannot listen for DNS on {busy} (UDP and TCP): ").And.Contain("is another resolver (systemd-resolved, dnsmasq) bound there?"));
        Assert.That(error.InnerException, Is.TypeOf<SocketException>().With.Property("SocketErrorCode").EqualTo(SocketError.AddressAlreadyInUse));
        takenUdp.Close();
        takenTcp.Close();
        forwarder.Start();
        Assert.That(forwarder.LocalEndPoints, Is.EqualTo(new[] { busy }), "the second try binds it");
        await forwarder.DisposeAsync();
    }

    /// <summary>A start racing the dispose (a second trial: 26 of 200 gateways and 49 of 200 proxies kept listening
    /// after both returned, and a forwarder's UDP thread ended the process): whichever comes first, nothing listens
    /// once both have returned.</summary>
    [Test]
    public async Task AStartRacingTheDisposeLeavesNothingListening()
    {
        for (int round = 0; round < 40; round++)
        {
            int port = FreePort();
            var address = new IPEndPoint(IPAddress.Loopback, port);
            var gateway = new TunnelGateway(new TunnelGatewayOptions { Listen = _tunnel, DnsUpstreams = [address] }, Policy(), NullLoggerFactory.Instance);
            var proxy = new EgressProxy(new EgressProxyOptions { Tunnel = _tunnel, Listen = [address] }, Policy(), NullLoggerFactory.Instance);
            var forwarder = new DnsForwarder(new DnsForwarderOptions { Tunnel = _tunnel, Listen = [new IPEndPoint(IPAddress.Loopback, FreePort())] }, Policy(), NullLoggerFactory.Instance);

            await Task.WhenAll(
                Race(gateway.Start, gateway.DisposeAsync),
                Race(proxy.Start, proxy.DisposeAsync),
                Race(forwarder.Start, forwarder.DisposeAsync));

            Assert.That(File.Exists($"{_directory}/tunnel.sock"), Is.False, $"round {round}: the gateway's socket is gone");
            Assert.That(() => Connect(address), Throws.TypeOf<SocketException>(), $"round {round}: the proxy listens no more");
        }

        static Task Race(Action start, Func<ValueTask> dispose) => Task.WhenAll(
            Task.Run(() =>
            {
                try
                {
                    start();
                }
                catch (ObjectDisposedException)
                {
                    // the dispose came first
                }
            }),
            Task.Run(async () => await dispose()));
    }

    [Test]
    public void AProxyOrForwarderWithNoAddressToListenOnIsRefusedAtConstruction()
    {
        Assert.That(() => new EgressProxy(new EgressProxyOptions { Tunnel = _tunnel, Listen = [] }, Policy(), NullLoggerFactory.Instance),
            Throws.ArgumentException.With.Message.Contains("options.Listen is empty"));
        Assert.That(() => new DnsForwarder(new DnsForwarderOptions { Tunnel = _tunnel, Listen = [] }, Policy(), NullLoggerFactory.Instance),
            Throws.ArgumentException.With.Message.Contains("options.Listen is empty"));
    }

    [TestCase("HeaderTimeout")]
    [TestCase("ConnectTimeout")]
    [TestCase("DnsTimeout")]
    [TestCase("ShutdownDrain")]
    [TestCase("MaxStreams")]
    [TestCase("KeepAliveInterval")]
    [TestCase("KeepAliveProbes")]
    [TestCase("Relay.IdleTimeout")]
    public void AGatewaySettingOutsideItsRangeIsRefusedAtConstructionNamingIt(string setting)
    {
        TimeSpan negative = TimeSpan.FromSeconds(-1);
        var options = setting switch
        {
            "HeaderTimeout" => new TunnelGatewayOptions { Listen = _tunnel, HeaderTimeout = negative },
            "ConnectTimeout" => new TunnelGatewayOptions { Listen = _tunnel, ConnectTimeout = TimeSpan.Zero },
            "DnsTimeout" => new TunnelGatewayOptions { Listen = _tunnel, DnsTimeout = negative },
            "ShutdownDrain" => new TunnelGatewayOptions { Listen = _tunnel, ShutdownDrain = TimeSpan.MaxValue },
            "MaxStreams" => new TunnelGatewayOptions { Listen = _tunnel, MaxStreams = -5 },
            "KeepAliveInterval" => new TunnelGatewayOptions { Listen = _tunnel, KeepAliveInterval = TimeSpan.Zero },
            "Relay.IdleTimeout" => new TunnelGatewayOptions { Listen = _tunnel, Relay = new Egress.Relay.RelayOptions { IdleTimeout = TimeSpan.FromSeconds(-2) } },
            _ => new TunnelGatewayOptions { Listen = _tunnel, KeepAliveProbes = 128 },
        };

        Assert.That(() => new TunnelGateway(options, Policy(), NullLoggerFactory.Instance),
            Throws.TypeOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("options." + setting));
    }

    [Test]
    public async Task AGatewayTimeoutMayBeInfiniteButNotBeyondWhatATimerWaits()
    {
        Assert.That(() => new TunnelGateway(new TunnelGatewayOptions { Listen = _tunnel, ConnectTimeout = TimeSpan.MaxValue }, Policy(), NullLoggerFactory.Instance),
            Throws.TypeOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("options.ConnectTimeout"));
        Assert.That(() => new TunnelGateway(new TunnelGatewayOptions { Listen = _tunnel, DnsTimeout = Timeout.InfiniteTimeSpan }, Policy(), NullLoggerFactory.Instance),
            Throws.TypeOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("options.DnsTimeout"));
        TunnelGateway? gateway = null;
        Assert.That(
            () => gateway = new TunnelGateway(
                new TunnelGatewayOptions { Listen = _tunnel, HeaderTimeout = Timeout.InfiniteTimeSpan, ConnectTimeout = Timeout.InfiniteTimeSpan, DnsUpstreams = [new IPEndPoint(IPAddress.Loopback, 53)] },
                Policy(), NullLoggerFactory.Instance),
            Throws.Nothing,
            "no timeout at all is a choice the timers accept");
        await gateway!.DisposeAsync();
    }

    [Test]
    public void AProxySettingOutsideItsRangeIsRefusedAtConstructionNamingIt()
    {
        Assert.That(() => new EgressProxy(new EgressProxyOptions { Tunnel = _tunnel, StatusTimeout = TimeSpan.Zero }, Policy(), NullLoggerFactory.Instance),
            Throws.TypeOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("options.StatusTimeout"));
        Assert.That(() => new EgressProxy(new EgressProxyOptions { Tunnel = _tunnel, Relay = new Egress.Relay.RelayOptions { IdleTimeout = TimeSpan.FromSeconds(-2) } }, Policy(), NullLoggerFactory.Instance),
            Throws.TypeOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("options.Relay.IdleTimeout"));
    }

    [TestCase("QueryTimeout", 0)]
    [TestCase("QueryTimeout", 1)]
    [TestCase("QueryTimeout", 2)]
    [TestCase("StatusTimeout", 0)]
    [TestCase("StatusTimeout", 2)]
    [TestCase("StreamCount", 0)]
    [TestCase("StreamCount", 17)]
    [TestCase("TcpIdleTimeout", 0)] // a library trial's read of the options: this one was not checked at all
    [TestCase("TcpIdleTimeout", 1)]
    [TestCase("TcpIdleTimeout", 2)]
    [TestCase("TcpIdleTimeout", 3)]
    public void AForwarderSettingOutsideItsRangeIsRefusedAtConstructionNamingIt(string setting, int value)
    {
        // A query timeout below the file's 1 ms or beyond its int.MaxValue ms was taken as long as it was above zero,
        // and a status timeout was not checked at all: a zero one failed every tunnel DNS stream's open, a
        // negative or too long one threw from the timer at the first query instead of here.
        var listen = new[] { new IPEndPoint(IPAddress.Loopback, 0) };
        TimeSpan duration = value switch { 0 => TimeSpan.Zero, 1 => TimeSpan.FromTicks(1), 3 => TimeSpan.FromSeconds(-5), _ => TimeSpan.MaxValue };
        DnsForwarderOptions options = setting switch
        {
            "StreamCount" => new DnsForwarderOptions { Tunnel = _tunnel, Listen = listen, StreamCount = value },
            "StatusTimeout" => new DnsForwarderOptions { Tunnel = _tunnel, Listen = listen, StatusTimeout = duration },
            "TcpIdleTimeout" => new DnsForwarderOptions { Tunnel = _tunnel, Listen = listen, TcpIdleTimeout = duration },
            _ => new DnsForwarderOptions { Tunnel = _tunnel, Listen = listen, QueryTimeout = duration },
        };

        Assert.That(() => new DnsForwarder(options, Policy(), NullLoggerFactory.Instance),
            Throws.TypeOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("options." + setting));
    }

    [Test]
    public async Task AForwarderTakesNoTcpIdleLimit()
    {
        var forwarder = new DnsForwarder(
            new DnsForwarderOptions { Tunnel = _tunnel, Listen = [new IPEndPoint(IPAddress.Loopback, 0)], TcpIdleTimeout = Timeout.InfiniteTimeSpan }, Policy(), NullLoggerFactory.Instance);
        forwarder.Start();
        Assert.That(forwarder.LocalEndPoints, Has.Count.EqualTo(1));
        await forwarder.DisposeAsync();
    }

    private static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    private static EgressPolicy Policy() => EgressPolicy.Create(enabled: true, ["127.0.0.1"], new AllowlistCache());

    private static void Connect(IPEndPoint endPoint)
    {
        using var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        socket.Connect(endPoint);
    }
}
