using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Egress.Gateway;
using Egress.Policy;
using Egress.Relay;
using Egress.Tunnel;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Gateway;

/// <summary>
/// The parent's own addresses: read from its interfaces, kept current, and denied by the gateway unless an entry names
/// the single address, whatever else allows them (a name, <c>*</c>, a network that covers them). Without root: a real
/// <see cref="TunnelGateway"/> on a Unix socket, a fake interface list and a fake connect to a loopback echo server.
/// </summary>
public sealed class ParentAddressesTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);
    private static readonly IPAddress ParentV4 = IPAddress.Parse("198.51.100.50");
    private static readonly IPAddress ParentV6 = IPAddress.Parse("2001:db8:ffff::1");

    [Test]
    public void ReadsEveryAddressWithItsInterfaceAndIPv4MappedIsTheSame()
    {
        using var addresses = new ParentAddresses(() => [("eth0", ParentV4), ("eth0", ParentV6), ("lo", IPAddress.Loopback)], new FakeTimeProvider());

        Assert.Multiple(() =>
        {
            Assert.That(addresses.Count, Is.EqualTo(3));
            Assert.That(addresses.TryGetInterface(ParentV6, out string? v6), Is.True);
            Assert.That(v6, Is.EqualTo("eth0"));
            Assert.That(addresses.TryGetInterface(ParentV4.MapToIPv6(), out string? mapped), Is.True, "::ffff:198.51.100.50 is the same address");
            Assert.That(mapped, Is.EqualTo("eth0"));
            Assert.That(addresses.TryGetInterface(IPAddress.Parse("198.51.100.51"), out _), Is.False);
        });
    }

    [Test]
    public void AnAddressAddedLaterIsKnownAfterTheRefreshIntervalAndAFailedReadKeepsTheLastSet()
    {
        var time = new FakeTimeProvider();
        var current = new List<(string, IPAddress)> { ("eth0", ParentV4) };
        bool failing = false;
        using var addresses = new ParentAddresses(() => failing ? throw new NetworkInformationException() : [.. current], time);
        current.Add(("eth1", ParentV6));

        Assert.That(addresses.TryGetInterface(ParentV6, out _), Is.False, "not read yet");
        time.Advance(ParentAddresses.RefreshInterval);
        Assert.That(addresses.TryGetInterface(ParentV6, out string? name), Is.True);
        Assert.That(name, Is.EqualTo("eth1"));

        failing = true;
        time.Advance(ParentAddresses.RefreshInterval);
        Assert.That(addresses.Count, Is.EqualTo(2), "a failed read keeps the previous set, never an empty one");
    }

    /// <summary>From a red-team trial: under the shipped systemd unit (<c>RestrictAddressFamilies=</c> without
    /// <c>AF_NETLINK</c>) the interfaces cannot be read (getifaddrs needs rtnetlink). A first read that failed left the
    /// set empty, so every address of the parent would have been allowed; it is a start error instead.</summary>
    [Test]
    public void AFirstReadThatFailsIsAStartErrorNotAnEmptySet()
    {
        var error = Assert.Throws<IOException>(() => new ParentAddresses(() => throw new NetworkInformationException(97), new FakeTimeProvider()).Dispose())!;

        Assert.That(error.Message, Does.Contain("cannot read this machine's own addresses").And.Contain("AF_NETLINK"));
    }

    [Test]
    public void ThisMachinesInterfacesIncludeLoopback()
    {
        using var addresses = new ParentAddresses(null, TimeProvider.System);

        Assert.That(addresses.TryGetInterface(IPAddress.Loopback, out string? name), Is.True);
        Assert.That(name, Is.Not.Empty);
    }

    [TestCase("*", "198.51.100.50", false)]
    [TestCase("198.51.100.0/24", "198.51.100.50", false)]
    [TestCase("2001:db8::/32", "2001:db8:ffff::1", false)]
    [TestCase("198.51.100.50", "198.51.100.50", true)]
    [TestCase("198.51.100.50/32", "198.51.100.50", true)]
    [TestCase("2001:db8:ffff::1", "2001:db8:ffff::1", true)]
    [TestCase("*", "198.51.100.51", true)]
    public async Task GatewayDeniesItsOwnAddressesUnlessAnEntryNamesTheAddress(string entry, string destination, bool allowed)
    {
        string directory = Directory.CreateTempSubdirectory("egress-gwpa-").FullName;
        using var log = new LogCapture();
        using var echo = new EchoServer();
        int dialed = 0;
        var endpoint = TunnelEndpoint.Parse($"unix:{directory}/tunnel.sock");
        var policy = EgressPolicy.Create(true, [entry], new AllowlistCache());
        await using (var gateway = new TunnelGateway(
            new TunnelGatewayOptions { Listen = endpoint, DnsUpstreams = [new IPEndPoint(IPAddress.Loopback, 53)] },
            policy,
            log.Factory,
            async (socket, _, cancellationToken) =>
            {
                Interlocked.Increment(ref dialed);
                if (socket.AddressFamily == AddressFamily.InterNetworkV6)
                {
                    socket.DualMode = true; // the echo server listens on 127.0.0.1
                }

                await socket.ConnectAsync(echo.EndPoint, cancellationToken);
            },
            () => [("ens5", ParentV4), ("ens5", ParentV6)]))
        {
            gateway.Start();
            using Socket stream = await TunnelWire.ConnectAsync(endpoint);
            await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse(destination), 8082), null));
            var response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);

            Assert.Multiple(() =>
            {
                Assert.That(response.Status, Is.EqualTo(allowed ? TunnelStatus.Ok : TunnelStatus.DeniedByPolicy), response.Detail);
                Assert.That(dialed, Is.EqualTo(allowed ? 1 : 0), "a denied destination is never dialed");
                if (!allowed)
                {
                    Assert.That(response.Detail, Does.Contain("denied: an address of the parent itself (interface ens5); an entry naming this one address allows it"));
                }
            });
        }

        Directory.Delete(directory, recursive: true);
    }
}
