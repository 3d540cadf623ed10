using System.Net;
using System.Net.Sockets;
using Egress.Interception;

namespace Egress.Tests.Interception;

/// <summary>
/// Real iptables DNAT in a private network namespace, as inside an enclave: clients connect to addresses that do
/// not exist, the OUTPUT nat chain sends them to loopback listeners, and SO_ORIGINAL_DST tells where they meant to go.
/// </summary>
public sealed class OriginalDestinationNamespaceTests
{
    private static readonly IPAddress RedirectedV4 = IPAddress.Parse("198.18.0.10");
    private static readonly IPAddress RedirectedToDualModeV4 = IPAddress.Parse("198.18.0.20");
    private static readonly IPAddress RedirectedV6 = IPAddress.Parse("2001:db8::10");

    private NetworkNamespace? _namespace;
    private Socket? _listenerV4;
    private Socket? _listenerV6;
    private Socket? _listenerDualMode;
    private Socket? _listenerUntracked;

    [OneTimeSetUp]
    public void CreateNamespaceWithDnatRules()
    {
        if (NetworkNamespace.Unavailability() is { } reason)
        {
            Assert.Ignore($"SKIPPED: the real DNAT tests of SO_ORIGINAL_DST did not run: {reason}.");
        }

        try
        {
            _namespace = NetworkNamespace.Create();
        }
        catch (InvalidOperationException e)
        {
            Assert.Ignore($"SKIPPED: the real DNAT tests of SO_ORIGINAL_DST did not run: cannot create a network namespace here: {e.Message}");
        }

        (_listenerV4, _listenerV6, _listenerDualMode, _listenerUntracked) = _namespace.InNamespace(() => (
            OriginalDestinationLoopbackTests.Listen(new IPEndPoint(IPAddress.Loopback, 0), dualMode: false),
            OriginalDestinationLoopbackTests.Listen(new IPEndPoint(IPAddress.IPv6Loopback, 0), dualMode: false),
            OriginalDestinationLoopbackTests.Listen(new IPEndPoint(IPAddress.IPv6Any, 0), dualMode: true),
            OriginalDestinationLoopbackTests.Listen(new IPEndPoint(IPAddress.Loopback, 0), dualMode: false)));

        _namespace.Run("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", RedirectedV4.ToString(),
            "-j", "DNAT", "--to-destination", $"127.0.0.1:{Port(_listenerV4)}");
        _namespace.Run("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", RedirectedToDualModeV4.ToString(),
            "-j", "DNAT", "--to-destination", $"127.0.0.1:{Port(_listenerDualMode)}");
        // As in the enclave: DNATed clients otherwise keep source address 0.0.0.0.
        _namespace.Run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-s", "0.0.0.0",
            "-j", "SNAT", "--to-source", "127.0.0.1");
        _namespace.Run("iptables", "-t", "raw", "-A", "OUTPUT", "-p", "tcp", "--dport", $"{Port(_listenerUntracked)}", "-j", "CT", "--notrack");
        _namespace.Run("iptables", "-t", "raw", "-A", "OUTPUT", "-p", "tcp", "--sport", $"{Port(_listenerUntracked)}", "-j", "CT", "--notrack");
        _namespace.Run("ip6tables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", RedirectedV6.ToString(),
            "-j", "DNAT", "--to-destination", $"[::1]:{Port(_listenerV6)}");
    }

    [OneTimeTearDown]
    public void DeleteNamespace()
    {
        _listenerV4?.Dispose();
        _listenerV6?.Dispose();
        _listenerDualMode?.Dispose();
        _listenerUntracked?.Dispose();
        _namespace?.Dispose();
    }

    [Test]
    public async Task IPv4DnatIsRedirectedToTheOriginalDestination()
    {
        OriginalDestinationResult result = await ConnectAndReadAsync(_listenerV4!, new IPEndPoint(RedirectedV4, 587));

        Assert.That(result, Is.EqualTo(new OriginalDestinationResult(OriginalDestinationStatus.Redirected, new IPEndPoint(RedirectedV4, 587), null)));
    }

    [Test]
    public async Task IPv6DnatIsRedirectedToTheOriginalDestination()
    {
        OriginalDestinationResult result = await ConnectAndReadAsync(_listenerV6!, new IPEndPoint(RedirectedV6, 443));

        Assert.That(result, Is.EqualTo(new OriginalDestinationResult(OriginalDestinationStatus.Redirected, new IPEndPoint(RedirectedV6, 443), null)));
    }

    [Test]
    public async Task IPv4DnatToDualModeListenerComesOutAsPlainIPv4()
    {
        OriginalDestinationResult result = await ConnectAndReadAsync(_listenerDualMode!, new IPEndPoint(RedirectedToDualModeV4, 25));

        Assert.That(result.Status, Is.EqualTo(OriginalDestinationStatus.Redirected), result.Detail);
        Assert.That(result.Destination, Is.EqualTo(new IPEndPoint(RedirectedToDualModeV4, 25)));
        Assert.That(result.Destination!.AddressFamily, Is.EqualTo(AddressFamily.InterNetwork));
    }

    [Test]
    public async Task IPv4DirectConnectionWithConntrackIsNotRedirected()
    {
        OriginalDestinationResult result = await ConnectAndReadAsync(_listenerV4!, new IPEndPoint(IPAddress.Loopback, Port(_listenerV4!)));

        Assert.That(result.Status, Is.EqualTo(OriginalDestinationStatus.NotRedirected), result.Detail);
        Assert.That(result.Destination, Is.Null);
        Assert.That(result.Detail, Does.Contain($"127.0.0.1:{Port(_listenerV4!)} is the listener itself"));
    }

    [Test]
    public async Task IPv6DirectConnectionWithConntrackIsNotRedirected()
    {
        OriginalDestinationResult result = await ConnectAndReadAsync(_listenerV6!, new IPEndPoint(IPAddress.IPv6Loopback, Port(_listenerV6!)));

        Assert.That(result.Status, Is.EqualTo(OriginalDestinationStatus.NotRedirected), result.Detail);
        Assert.That(result.Detail, Does.Contain($"[::1]:{Port(_listenerV6!)} is the listener itself"));
    }

    [Test]
    public async Task IPv4DirectConnectionToDualModeListenerIsNotRedirected()
    {
        OriginalDestinationResult result = await ConnectAndReadAsync(_listenerDualMode!, new IPEndPoint(IPAddress.Loopback, Port(_listenerDualMode!)));

        Assert.That(result.Status, Is.EqualTo(OriginalDestinationStatus.NotRedirected), result.Detail);
        Assert.That(result.Detail, Does.Contain($"127.0.0.1:{Port(_listenerDualMode!)} is the listener itself"));
    }

    [Test]
    public async Task UntrackedConnectionIsNotRedirected()
    {
        OriginalDestinationResult result = await ConnectAndReadAsync(_listenerUntracked!, new IPEndPoint(IPAddress.Loopback, Port(_listenerUntracked!)));

        Assert.That(result, Is.EqualTo(new OriginalDestinationResult(
            OriginalDestinationStatus.NotRedirected, null, "conntrack has no entry for this connection (SO_ORIGINAL_DST: ENOENT)")));
    }

    private async Task<OriginalDestinationResult> ConnectAndReadAsync(Socket listener, IPEndPoint destination)
    {
        using Socket client = _namespace!.InNamespace(() => new Socket(destination.AddressFamily, SocketType.Stream, ProtocolType.Tcp));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await client.ConnectAsync(destination, timeout.Token);
        var clientLocal = (IPEndPoint)client.LocalEndPoint!;

        // The listener is shared by tests running one after another; take the connection whose peer is our client.
        using Socket accepted = await listener.AcceptAsync(timeout.Token);
        var remote = (IPEndPoint)accepted.RemoteEndPoint!;
        Assert.That(remote.Port, Is.EqualTo(clientLocal.Port), "accepted the connection of this test's client");
        return OriginalDestination.Read(accepted);
    }

    private static int Port(Socket listener) => ((IPEndPoint)listener.LocalEndPoint!).Port;
}
