using System.Net;
using System.Net.Sockets;
using Egress.Interception;

namespace Egress.Tests.Interception;

/// <summary>Connections that reach the listener directly, in the test's own network namespace.</summary>
public sealed class OriginalDestinationLoopbackTests
{
    [Test]
    public async Task IPv4LoopbackConnectionIsNotRedirected()
    {
        using Socket listener = Listen(new IPEndPoint(IPAddress.Loopback, 0), dualMode: false);

        (Socket client, Socket accepted) = await ConnectAsync(listener, IPAddress.Loopback);
        using (client)
        using (accepted)
        {
            AssertNotRedirected(OriginalDestination.Read(accepted));
        }
    }

    [Test]
    public async Task IPv6LoopbackConnectionIsNotRedirected()
    {
        using Socket listener = Listen(new IPEndPoint(IPAddress.IPv6Loopback, 0), dualMode: false);

        (Socket client, Socket accepted) = await ConnectAsync(listener, IPAddress.IPv6Loopback);
        using (client)
        using (accepted)
        {
            AssertNotRedirected(OriginalDestination.Read(accepted));
        }
    }

    [Test]
    public async Task IPv4ClientOfDualModeListenerIsNotRedirected()
    {
        using Socket listener = Listen(new IPEndPoint(IPAddress.IPv6Any, 0), dualMode: true);

        (Socket client, Socket accepted) = await ConnectAsync(listener, IPAddress.Loopback);
        using (client)
        using (accepted)
        {
            Assert.That(((IPEndPoint)accepted.RemoteEndPoint!).Address.IsIPv4MappedToIPv6, Is.True, "precondition: v4-mapped remote");
            AssertNotRedirected(OriginalDestination.Read(accepted));
        }
    }

    [Test]
    public void UnixSocketFails()
    {
        string path = Path.Combine(Path.GetTempPath(), $"egress-od-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));

        OriginalDestinationResult result = OriginalDestination.Read(listener);

        Assert.That(result.Status, Is.EqualTo(OriginalDestinationStatus.Failed));
        Assert.That(result.Destination, Is.Null);
        Assert.That(result.Detail, Does.Contain("not an IP socket"));
    }

    /// <summary>A library consumer's trial: a UDP IPv6 socket was called "not an IP socket (address family
    /// InterNetworkV6)".</summary>
    [TestCase(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp, "not a TCP socket (Dgram)")]
    [TestCase(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp, "not a TCP socket (Dgram)")]
    [TestCase(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp, "no local address")]
    public void ANonTcpOrUnboundSocketFailsSayingWhich(AddressFamily family, SocketType type, ProtocolType protocol, string detail)
    {
        using var socket = new Socket(family, type, protocol);

        OriginalDestinationResult result = OriginalDestination.Read(socket);

        Assert.That(result.Status, Is.EqualTo(OriginalDestinationStatus.Failed));
        Assert.That(result.Detail, Does.Contain(detail));
    }

    /// <summary>A listening (or bound, unconnected) socket passed where an accepted one belongs was called a connection
    /// conntrack has no entry for (NotRedirected), which sends its caller looking at the firewall rules.</summary>
    [TestCase("127.0.0.1", true)]
    [TestCase("::1", true)]
    [TestCase("::1", false)]
    public void AListeningOrUnconnectedSocketFailsSayingItIsNotAConnection(string address, bool listen)
    {
        using var socket = new Socket(IPAddress.Parse(address).AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Parse(address), 0));
        if (listen)
        {
            socket.Listen();
        }

        OriginalDestinationResult result = OriginalDestination.Read(socket);

        Assert.That(result.Status, Is.EqualTo(OriginalDestinationStatus.Failed), result.Detail);
        Assert.That(result.Detail, Does.Contain("not a connection"));
        Assert.That(result.Detail, listen ? Does.Contain("is a listener") : Does.Contain("never connected"));
    }

    /// <summary>An accepted connection the caller already shut down has no peer for the runtime: the detail says to read
    /// the destination before shutting it down (it said "pass a socket that accept returned", which this one was).</summary>
    [Test]
    public async Task AnAcceptedConnectionAlreadyShutDownFailsSayingToReadItFirst()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!);
        using Socket accepted = await listener.AcceptAsync();
        accepted.Shutdown(SocketShutdown.Both);

        OriginalDestinationResult result = OriginalDestination.Read(accepted);

        Assert.That(result.Status, Is.EqualTo(OriginalDestinationStatus.Failed), result.Detail);
        Assert.That(result.Detail, Does.Contain("before shutting the socket down"));
        Assert.That(result.Detail, Does.Not.Contain("pass a socket that accept returned"));
    }

    private static void AssertNotRedirected(OriginalDestinationResult result)
    {
        Assert.That(result.Status, Is.EqualTo(OriginalDestinationStatus.NotRedirected), result.Detail);
        Assert.That(result.Destination, Is.Null);
        Assert.That(result.Detail, Is.Not.Empty);
    }

    internal static Socket Listen(IPEndPoint endPoint, bool dualMode)
    {
        var listener = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        if (dualMode)
        {
            listener.DualMode = true;
        }

        listener.Bind(endPoint);
        listener.Listen();
        return listener;
    }

    private static async Task<(Socket Client, Socket Accepted)> ConnectAsync(Socket listener, IPAddress address)
    {
        var client = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await client.ConnectAsync(new IPEndPoint(address, ((IPEndPoint)listener.LocalEndPoint!).Port), timeout.Token);
        return (client, await listener.AcceptAsync(timeout.Token));
    }
}
