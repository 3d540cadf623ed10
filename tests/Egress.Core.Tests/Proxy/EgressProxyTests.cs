using System.Net;
using System.Net.Sockets;
using Egress.Policy;
using Egress.Proxy;
using Egress.Tunnel;

namespace Egress.Tests.Proxy;

/// <summary>The proxy in the root namespace, where nothing is redirected, and its choice of host hint.</summary>
public sealed class EgressProxyTests
{
    /// <summary>A library user's trial: <c>Relay = null!</c> or <c>Listen = null!</c> threw NullReferenceException where
    /// the constructor documents ArgumentNullException.</summary>
    [TestCase("Listen")]
    [TestCase("Tunnel")]
    [TestCase("Relay")]
    public void AnOptionSetToNullIsAnArgumentNullExceptionNamingIt(string property)
    {
        var options = new EgressProxyOptions
        {
            Listen = property == "Listen" ? null! : [new IPEndPoint(IPAddress.Loopback, 0)],
            Tunnel = property == "Tunnel" ? null! : TunnelEndpoint.Parse("unix:/nonexistent/tunnel.sock"),
            Relay = property == "Relay" ? null! : Egress.Relay.RelayOptions.Default,
        };
        var policy = EgressPolicy.Create(true, ["*"], new AllowlistCache(new AllowlistCacheOptions()));
        using var logs = new LogCapture();

        var error = Assert.Throws<ArgumentNullException>(() => new EgressProxy(options, policy, logs.Factory));
        Assert.That(error!.ParamName, Is.EqualTo("options." + property));
    }

    [Test]
    public async Task DirectConnectionIsResetAndLoggedAsNotRedirected()
    {
        string directory = Directory.CreateTempSubdirectory("egress-px-").FullName;
        using var logs = new LogCapture();
        var options = new EgressProxyOptions
        {
            Listen = [new IPEndPoint(IPAddress.Loopback, 0)],
            Tunnel = TunnelEndpoint.Parse($"unix:{directory}/tunnel.sock"),
        };
        var policy = EgressPolicy.Create(true, ["*"], new AllowlistCache(new AllowlistCacheOptions()));
        try
        {
            await using var proxy = new EgressProxy(options, policy, logs.Factory);
            proxy.Start();
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            client.Bind(new IPEndPoint(IPAddress.Loopback, 0));

            // On loopback the RST can beat the connect's completion: a reset either there or on the first read.
            var error = Assert.ThrowsAsync<SocketException>(async () =>
            {
                await client.ConnectAsync(proxy.LocalEndPoints[0]);
                await client.ReceiveAsync(new byte[16]).WaitAsync(TimeSpan.FromSeconds(10));
            });

            Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionReset));
            string line = await logs.WaitForLineAsync("refused connection");
            Assert.That(line, Does.StartWith($"Warning: refused connection from {client.LocalEndPoint}: not redirected (NotRedirected: "));
            Assert.That(line, Does.EndWith("); connect through the DNAT rule, not to the proxy port"));
            Assert.That(logs.Values(101, "EndPoint"), Is.EqualTo(new[] { $"{proxy.LocalEndPoints[0]}" }), "listening logged");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    // A field trial: the derived limits showed only in the first refusal, so nobody could see them before reaching them.
    [TestCase(0, 0)]
    [TestCase(5, 3)]
    public async Task TheStartLineNamesTheConnectionLimitsAndWhereTheyCameFrom(int maxConnections, int maxPending)
    {
        string directory = Directory.CreateTempSubdirectory("egress-px-").FullName;
        using var logs = new LogCapture();
        var options = new EgressProxyOptions
        {
            Listen = [new IPEndPoint(IPAddress.Loopback, 0)],
            Tunnel = TunnelEndpoint.Parse($"unix:{directory}/tunnel.sock"),
            MaxConnections = maxConnections,
            MaxPendingConnections = maxPending,
        };
        var policy = EgressPolicy.Create(true, ["*"], new AllowlistCache(new AllowlistCacheOptions()));
        try
        {
            await using var proxy = new EgressProxy(options, policy, logs.Factory);
            proxy.Start();

            string? limits = logs.Values(101, "Limits").Single();
            Assert.That(
                limits,
                maxConnections == 0
                    ? Does.Match($@"^enclave\.max_connections = \d+ \(derived from RLIMIT_NOFILE = \d+\), enclave\.max_pending_connections = \d+ \(derived from {Environment.ProcessorCount} processors\)$")
                    : Is.EqualTo("enclave.max_connections = 5, enclave.max_pending_connections = 3"));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public async Task StartListensOnEveryAddress()
    {
        using var logs = new LogCapture();
        var options = new EgressProxyOptions
        {
            Listen = [new IPEndPoint(IPAddress.Loopback, 0), new IPEndPoint(IPAddress.IPv6Loopback, 0)],
            Tunnel = TunnelEndpoint.Parse("unix:/nonexistent/tunnel.sock"),
        };
        await using var proxy = new EgressProxy(options, EgressPolicy.Create(true, [], new AllowlistCache(new AllowlistCacheOptions())), logs.Factory);

        proxy.Start();

        Assert.That(proxy.LocalEndPoints.Select(e => ((IPEndPoint)e).Address), Is.EqualTo(new[] { IPAddress.Loopback, IPAddress.IPv6Loopback }));
        Assert.That(proxy.LocalEndPoints.Select(e => ((IPEndPoint)e).Port), Has.None.EqualTo(0));
    }

    [Test]
    public async Task StartFailsWhenTheAddressIsTaken()
    {
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        using var logs = new LogCapture();
        var options = new EgressProxyOptions { Listen = [(IPEndPoint)taken.LocalEndPoint!], Tunnel = TunnelEndpoint.Parse("unix:/nonexistent/tunnel.sock") };
        await using var proxy = new EgressProxy(options, EgressPolicy.Create(true, [], new AllowlistCache(new AllowlistCacheOptions())), logs.Factory);

        var error = Assert.Throws<IOException>(proxy.Start);

        // The address and what the error means, as the gateway and the hosted path say it (a library trial read
        // "Address already in use" alone from the proxy and the DNS forwarder started by hand).
        Assert.That(error!.Message, Does.StartWith($"cannot listen on {taken.LocalEndPoint}: ").And.Contain("(EADDRINUSE: another socket is bound there"));
        Assert.That(error.InnerException, Is.TypeOf<SocketException>().With.Property("SocketErrorCode").EqualTo(SocketError.AddressAlreadyInUse));
    }

    [TestCase(DecisionReason.Learned, "api.example.com", "api.example.com")]
    [TestCase(DecisionReason.LearnedInGrace, "api.example.com", "api.example.com")]
    [TestCase(DecisionReason.Learned, "odd name.example.com", null)]
    [TestCase(DecisionReason.Learned, "caf\u00e9.example.com", null)]
    [TestCase(DecisionReason.StaticEntry, "10.0.0.1", null)]
    [TestCase(DecisionReason.AllowAll, "*", null)]
    public void HostHintIsALearnedNameTheTunnelCanCarry(DecisionReason reason, string subject, string? hint) =>
        Assert.That(ProxyConnectionHandler.HostHintFor(new PolicyDecision(true, reason, subject, TimeSpan.FromSeconds(1))), Is.EqualTo(hint));

    [Test]
    [Platform("Linux")]
    public async Task AnAcceptedConnectionHasNoDelayAndUrgentDataInLineFromTheListener()
    {
        // The proxy sets both on its listener once; the kernel copies them to every accepted socket, so the handler
        // spends no system call per connection on them.
        using Socket listener = EgressProxy.Bind(new IPEndPoint(IPAddress.Loopback, 0), Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance)!;
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!);
        using Socket accepted = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Multiple(() =>
        {
            Assert.That(accepted.NoDelay, Is.True, "TCP_NODELAY");
            Assert.That((int)accepted.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.OutOfBandInline)!, Is.Not.Zero, "SO_OOBINLINE");
        });
    }

    [Test]
    [Platform("Linux")]
    public void AnIPv6ListenAddressNoInterfaceHasIsAnErrorNotSkippedAsIPv6Unavailable()
    {
        // The proxy skipped any IPv6 address that failed with EADDRNOTAVAIL, so a mistyped proxy_listen was dropped with
        // "IPv6 is unavailable here" while the DNS forwarder refused the same address. Only ::1 missing means that.
        Assume.That(Socket.OSSupportsIPv6, "IPv6 is compiled in");
        var address = new IPEndPoint(IPAddress.Parse("2001:db8::7"), 0);

        var error = Assert.Throws<SocketException>(() => EgressProxy.Bind(address, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance));

        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.AddressNotAvailable));
    }
}
