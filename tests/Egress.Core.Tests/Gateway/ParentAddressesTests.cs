using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Egress.Gateway;
using Egress.Policy;
using Egress.Relay;
using Egress.Tunnel;
using Microsoft.Extensions.Logging.Testing;
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

    /// <summary>From a red-team trial: the parent's IPv4 address in NAT64 form reached its own listener through a
    /// (stand-in) NAT64 gateway; only the IPv4-mapped form was known as the parent's.</summary>
    [TestCase("64:ff9b::198.51.100.50", "eth0, 198.51.100.50 via NAT64 64:ff9b::/96")]
    [TestCase("::198.51.100.50", "eth0, 198.51.100.50 via IPv4-compatible ::/96")]
    [TestCase("::ffff:0:198.51.100.50", "eth0, 198.51.100.50 via IPv4-translated ::ffff:0:0:0/96")]
    [TestCase("2002:c633:6432::1", "eth0, 198.51.100.50 via 6to4 2002::/16")]
    [TestCase("64:ff9b::203.0.113.9", "lo, local route 203.0.113.0/24, 203.0.113.9 via NAT64 64:ff9b::/96")]
    public void TheParentsIPv4AddressInAnotherIPv6FormIsTheParents(string address, string expected)
    {
        using var addresses = new ParentAddresses(
            () => [("eth0", ParentV4), ("lo", IPAddress.Loopback)], new FakeTimeProvider(), () => [new LocalRoute(IPNetwork.Parse("203.0.113.0/24"), "lo")]);

        Assert.Multiple(() =>
        {
            Assert.That(addresses.TryGetInterface(IPAddress.Parse(address), out string? name), Is.True);
            Assert.That(name, Is.EqualTo(expected));
            Assert.That(addresses.TryGetInterface(IPAddress.Parse("64:ff9b::198.51.100.51"), out _), Is.False, "another IPv4 address in NAT64 form");
            Assert.That(addresses.TryGetInterface(IPAddress.Parse("::1"), out _), Is.False, "::1 is not IPv4-compatible 0.0.0.1 (nor this parent's: its interfaces list 127.0.0.1 only here)");
        });
    }

    /// <summary>The kernel reports a change and the timer fires at about the same time: two re-reads. One that read
    /// before the change and finished after the other wrote its older reading last, and the change went unseen until the
    /// next one (30 s).</summary>
    [Test]
    public async Task ASlowReReadNeverWritesItsOlderReadingOverANewerOne()
    {
        var current = new List<(string, IPAddress)> { ("eth0", ParentV4) };
        int reads = 0;
        using var slowHasRead = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        using var addresses = new ParentAddresses(
            () =>
            {
                List<(string, IPAddress)> reading = [.. current];
                if (Interlocked.Increment(ref reads) == 2)
                {
                    slowHasRead.Set();
                    release.Wait(HangGuard);
                }

                return reading;
            },
            new FakeTimeProvider());

        Task slow = Task.Run(addresses.Refresh);
        Assert.That(slowHasRead.Wait(HangGuard), Is.True);
        current = [("eth1", ParentV6)];
        Task fast = Task.Run(addresses.Refresh);
        await Task.WhenAny(fast, Task.Delay(200)); // time for a re-read that does not wait for the slow one to end first
        release.Set();
        await Task.WhenAll(slow, fast).WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(addresses.TryGetInterface(ParentV6, out _), Is.True, "the newer reading is the one kept");
            Assert.That(addresses.TryGetInterface(ParentV4, out _), Is.False);
        });
    }

    /// <summary>From a review: the route answers were dropped only when the re-read a change report started had written
    /// its reading, so a destination the kernel had just made local still counted as not the parent's meanwhile (up to
    /// 39 ms with 10,000 routes to re-read, 270 ms with 100,000). A report drops them at once.</summary>
    [Test]
    public void AChangeReportDropsTheRouteAnswersBeforeTheReReadEnds()
    {
        var destination = IPAddress.Parse("2001:db8:9::77");
        bool local = false;
        bool reReading = false;
        using var reReadStarted = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var (kernel, reports) = DatagramPair();
        using (kernel)
        using (var addresses = new ParentAddresses(
            () =>
            {
                if (Volatile.Read(ref reReading))
                {
                    reReadStarted.Set();
                    release.Wait(HangGuard);
                }

                return [("eth0", ParentV4)];
            },
            new FakeTimeProvider(),
            () => [],
            _ => Volatile.Read(ref local) ? (new LocalRoute(IPNetwork.Parse("2001:db8:9::/64"), "lo"), 100u) : null,
            changes: reports))
        {
            Assert.That(addresses.TryGetInterface(destination, out _), Is.False, "not local yet; the answer is kept");
            Volatile.Write(ref local, true);
            Volatile.Write(ref reReading, true);
            kernel.Send(new byte[16]); // the kernel's report of the new route
            Assert.That(reReadStarted.Wait(HangGuard), Is.True, "the report started a re-read");

            bool denied = addresses.TryGetInterface(destination, out string? name); // while the re-read is still reading
            release.Set();

            Assert.That(denied, Is.True, "the answer from before the change was still used");
            Assert.That(name, Is.EqualTo("lo, local route 2001:db8:9::/64 in table 100"));
        }
    }

    private static (Socket Kernel, Socket Reports) DatagramPair()
    {
        string path = Path.Combine(Path.GetTempPath(), $"egress-reports-{Guid.NewGuid():N}.sock");
        var reports = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        reports.Bind(new UnixDomainSocketEndPoint(path));
        var kernel = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        kernel.Connect(new UnixDomainSocketEndPoint(path));
        File.Delete(path);
        return (kernel, reports);
    }

    [Test]
    public void AChangedSetIsLoggedOnceWithWhatWasAddedAndRemoved()
    {
        var time = new FakeTimeProvider();
        var current = new List<(string, IPAddress)> { ("eth0", ParentV4) };
        var logger = new FakeLogger();
        using var addresses = new ParentAddresses(() => [.. current], time, logger: logger);

        time.Advance(ParentAddresses.RefreshInterval);
        current.Add(("eth1", ParentV6));
        time.Advance(ParentAddresses.RefreshInterval);
        time.Advance(ParentAddresses.RefreshInterval);
        current.RemoveAt(0);
        time.Advance(ParentAddresses.RefreshInterval);

        var changed = logger.Collector.GetSnapshot().Where(record => record.Id.Id == 221).Select(record => record.Message).ToList();
        Assert.That(changed, Is.EqualTo(new[]
        {
            "this machine's own addresses changed (denied unless an entry names the address): added 2001:db8:ffff::1 (eth1); removed none",
            "this machine's own addresses changed (denied unless an entry names the address): added none; removed 198.51.100.50 (eth0)",
        }));
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

    /// <summary>getifaddrs lists what the runtime's interface list does (the runtime reads /proc/net/route as well, which
    /// costs O(routes) on every re-read; a review measured 180 ms at 100,000 routes).</summary>
    [Test]
    public void GetifaddrsListsTheInterfaceAddressesTheRuntimeDoes()
    {
        var expected = NetworkInterface.GetAllNetworkInterfaces()
            .SelectMany(nic => nic.GetIPProperties().UnicastAddresses.Select(unicast => $"{nic.Name} {unicast.Address}"))
            .Order(StringComparer.Ordinal).ToList();

        var read = InterfaceAddresses.Read().Select(pair => $"{pair.Interface} {pair.Address}").Order(StringComparer.Ordinal).ToList();

        Assert.Multiple(() =>
        {
            Assert.That(read, Is.EqualTo(expected));
            Assert.That(read, Has.Some.StartsWith("lo 127.0.0.1"));
        });
    }

    /// <summary>From a red-team trial: a prefix the parent's kernel delivers locally (AnyIP, <c>ip route add local
    /// 2001:db8:5::/64 dev lo</c>) has addresses on no interface, and with <c>"*"</c> or a network entry covering it a
    /// connection to one reached a service listening on <c>[::]</c> on the parent.</summary>
    [Test]
    public void AnAddressOnlyALocalRouteCoversIsTheParentsAndTheLogLineNamesTheRoute()
    {
        using var addresses = new ParentAddresses(
            () => [("eth0", ParentV4)],
            new FakeTimeProvider(),
            () => [
                new LocalRoute(IPNetwork.Parse("198.51.100.50/32"), "eth0"), // the interface address's own route
                new LocalRoute(IPNetwork.Parse("2001:db8:5::/64"), "lo"),
                new LocalRoute(IPNetwork.Parse("203.0.113.0/24"), "lo"),
            ]);

        Assert.Multiple(() =>
        {
            Assert.That(addresses.TryGetInterface(IPAddress.Parse("2001:db8:5::77"), out string? v6), Is.True);
            Assert.That(v6, Is.EqualTo("lo, local route 2001:db8:5::/64"));
            Assert.That(addresses.TryGetInterface(IPAddress.Parse("::ffff:203.0.113.9"), out string? mapped), Is.True, "IPv4-mapped is IPv4");
            Assert.That(mapped, Is.EqualTo("lo, local route 203.0.113.0/24"));
            Assert.That(addresses.TryGetInterface(ParentV4, out string? own), Is.True);
            Assert.That(own, Is.EqualTo("eth0"), "an interface's address names its interface, not its route");
            Assert.That(addresses.TryGetInterface(IPAddress.Parse("2001:db8:6::77"), out _), Is.False);
            Assert.That(addresses.TryGetInterface(IPAddress.Parse("203.0.114.1"), out _), Is.False);
            Assert.That(addresses.ToString(), Is.EqualTo("198.51.100.50 (eth0), local route 2001:db8:5::/64 (lo), local route 203.0.113.0/24 (lo)"));
        });
    }

    [Test]
    public void ALocalRouteAddedLaterIsKnownAfterTheRefreshIntervalAndAFailedRouteReadKeepsTheLastSet()
    {
        var time = new FakeTimeProvider();
        var routes = new List<LocalRoute>();
        bool failing = false;
        using var addresses = new ParentAddresses(() => [("eth0", ParentV4)], time, () => failing ? throw new IOException("rtnetlink") : [.. routes]);
        routes.Add(new LocalRoute(IPNetwork.Parse("2001:db8:5::/64"), "lo"));

        Assert.That(addresses.TryGetInterface(IPAddress.Parse("2001:db8:5::1"), out _), Is.False, "not read yet");
        time.Advance(ParentAddresses.RefreshInterval);
        Assert.That(addresses.TryGetInterface(IPAddress.Parse("2001:db8:5::1"), out _), Is.True);

        failing = true;
        time.Advance(ParentAddresses.RefreshInterval);
        Assert.That(addresses.TryGetInterface(IPAddress.Parse("2001:db8:5::1"), out _), Is.True, "a failed read keeps the previous routes");
    }

    /// <summary>A <c>local</c> route in a table other than local, main and default, which a rule sends unmarked traffic
    /// to (<c>ip -6 rule add to 2001:db8:9::/64 lookup 100</c>), is not in the dump read; before, a connection to it
    /// reached a listener on <c>[::]</c> on the parent. The kernel's own route lookup for the destination finds it.
    /// Answers are kept until the next re-read; a failed lookup counts as the parent's (the connection is refused, not
    /// let through unchecked) and is asked again.</summary>
    [Test]
    public void TheKernelsRouteLookupFindsALocalRouteARuleLeadsToAndIsAskedOncePerRead()
    {
        var time = new FakeTimeProvider();
        var asked = new List<string>();
        bool failing = false;
        using var addresses = new ParentAddresses(
            () => [("eth0", ParentV4)],
            time,
            () => [],
            destination =>
            {
                asked.Add(destination.ToString());
                if (failing)
                {
                    throw new IOException("rtnetlink did not answer");
                }

                return IPNetwork.Parse("2001:db8:9::/64").Contains(destination)
                    ? (new LocalRoute(IPNetwork.Parse("2001:db8:9::/64"), "lo"), 100u)
                    : destination.Equals(IPAddress.Parse("203.0.113.9")) // asked as IPv4
                        ? (new LocalRoute(IPNetwork.Parse("203.0.113.0/24"), "lo"), LocalRouteReader.TableMain)
                        : null;
            });

        Assert.Multiple(() =>
        {
            Assert.That(addresses.TryGetInterface(IPAddress.Parse("2001:db8:9::5"), out string? ruled), Is.True);
            Assert.That(ruled, Is.EqualTo("lo, local route 2001:db8:9::/64 in table 100"));
            Assert.That(addresses.TryGetInterface(IPAddress.Parse("::ffff:203.0.113.9"), out string? main), Is.True);
            Assert.That(main, Is.EqualTo("lo, local route 203.0.113.0/24"), "the default rules' tables are not named");
            Assert.That(addresses.TryGetInterface(IPAddress.Parse("198.18.0.31"), out _), Is.False);
            Assert.That(addresses.TryGetInterface(IPAddress.Parse("198.18.0.31"), out _), Is.False);
            Assert.That(addresses.TryGetInterface(IPAddress.Parse("2001:db8:9::5"), out _), Is.True);
            Assert.That(addresses.TryGetInterface(ParentV4, out _), Is.True);
            Assert.That(asked, Is.EqualTo(new[] { "2001:db8:9::5", "203.0.113.9", "198.18.0.31" }), "each destination asked once");
        });

        time.Advance(ParentAddresses.RefreshInterval);
        failing = true;
        Assert.That(addresses.TryGetInterface(IPAddress.Parse("198.18.0.31"), out string? failed), Is.True, "a failed lookup counts as the parent's");
        Assert.That(failed, Is.EqualTo("unknown: its route could not be looked up, so it counts as one (rtnetlink did not answer)"));
        failing = false;
        Assert.That(addresses.TryGetInterface(IPAddress.Parse("198.18.0.31"), out _), Is.False, "and is asked again");
        Assert.That(asked, Has.Count.EqualTo(5));
    }

    /// <summary>From a review: a connect to 0.0.0.0 or :: reaches this machine's listeners (Linux sends it to
    /// loopback), while the kernel's route lookup answers EHOSTUNREACH / ENETUNREACH for it.</summary>
    [TestCase("0.0.0.0")]
    [TestCase("::")]
    [TestCase("::ffff:0.0.0.0")]
    public void TheUnspecifiedAddressIsTheParents(string address)
    {
        using var addresses = new ParentAddresses(() => [("eth0", ParentV4)], new FakeTimeProvider(), () => [], _ => null);

        Assert.That(addresses.TryGetInterface(IPAddress.Parse(address), out string? name), Is.True);
        Assert.That(name, Does.StartWith("lo, the unspecified address"));
    }

    /// <summary>From a review: a re-read that fails kept the route answers of the last reading, so an answer could
    /// outlive the refresh interval for as long as re-reads kept failing.</summary>
    [Test]
    public void AFailedReReadDropsTheRouteAnswersAllTheSame()
    {
        var time = new FakeTimeProvider();
        bool failing = false;
        int asked = 0;
        using var addresses = new ParentAddresses(
            () => [("eth0", ParentV4)], time, () => failing ? throw new IOException("rtnetlink") : [], _ => { asked++; return null; });

        addresses.TryGetInterface(IPAddress.Parse("198.18.0.31"), out _);
        addresses.TryGetInterface(IPAddress.Parse("198.18.0.31"), out _);
        failing = true;
        time.Advance(ParentAddresses.RefreshInterval);
        addresses.TryGetInterface(IPAddress.Parse("198.18.0.31"), out _);

        Assert.Multiple(() =>
        {
            Assert.That(asked, Is.EqualTo(2), "asked once, then again after the failed re-read");
            Assert.That(addresses.TryGetInterface(ParentV4, out _), Is.True, "the addresses read before are kept");
        });
    }

    /// <summary>The kernel's answer for loopback: IPv4 names the main table while no rule but the default ones exists (the
    /// local and main tables are merged then), local otherwise.</summary>
    [Test]
    public void ThisMachinesRouteLookupSaysLoopbackIsLocal()
    {
        var loopback = LocalRouteReader.Lookup(IPAddress.Parse("127.0.0.9"));
        var mappedLoopback = LocalRouteReader.Lookup(IPAddress.Parse("::ffff:127.0.0.9"));
        var v6Loopback = LocalRouteReader.Lookup(IPAddress.IPv6Loopback);

        Assert.Multiple(() =>
        {
            Assert.That(loopback, Is.Not.Null);
            Assert.That(loopback!.Value.Route, Is.EqualTo(new LocalRoute(IPNetwork.Parse("127.0.0.0/8"), "lo")));
            Assert.That(loopback.Value.Table, Is.AnyOf(LocalRouteReader.TableLocal, LocalRouteReader.TableMain));
            Assert.That(mappedLoopback, Is.EqualTo(loopback));
            Assert.That(v6Loopback?.Route.Prefix, Is.EqualTo(IPNetwork.Parse("::1/128")));
        });
    }

    [Test]
    public void AFirstRouteReadThatFailsIsAStartError()
    {
        var error = Assert.Throws<IOException>(() => new ParentAddresses(() => [("eth0", ParentV4)], new FakeTimeProvider(), () => throw new IOException("cannot open an rtnetlink socket")).Dispose())!;

        Assert.That(error.Message, Does.Contain("cannot read this machine's own addresses (cannot open an rtnetlink socket)"));
    }

    [Test]
    public void ThisMachinesLocalRoutesCoverLoopbackAndItsInterfaceAddresses()
    {
        List<LocalRoute> routes = LocalRouteReader.Read();

        Assert.Multiple(() =>
        {
            Assert.That(routes, Has.Some.Matches<LocalRoute>(route => route.Prefix.Contains(IPAddress.Parse("127.0.0.9")) && route.Interface == "lo"),
                () => string.Join(", ", routes));
            Assert.That(routes.Select(route => route.Prefix.BaseAddress.AddressFamily).Distinct(), Does.Contain(AddressFamily.InterNetwork));
        });
    }

    [TestCase("*", "198.51.100.50", false)]
    [TestCase("198.51.100.0/24", "198.51.100.50", false)]
    [TestCase("2001:db8::/32", "2001:db8:ffff::1", false)]
    [TestCase("198.51.100.50", "198.51.100.50", true)]
    [TestCase("198.51.100.50/32", "198.51.100.50", true)]
    [TestCase("2001:db8:ffff::1", "2001:db8:ffff::1", true)]
    [TestCase("*", "198.51.100.51", true)]
    // From a red-team trial: an entry naming the address on other ports exempted every port of it.
    [TestCase("198.51.100.0/24;198.51.100.50:22", "198.51.100.50", false)]
    [TestCase("198.51.100.0/24;198.51.100.50:22", "198.51.100.50", true, 22)]
    [TestCase("2001:db8::/32;[2001:db8:ffff::1]:22", "2001:db8:ffff::1", false)]
    [TestCase("2001:db8::/32;2001:db8:ffff::1/128:22", "2001:db8:ffff::1", false)]
    [TestCase("*;198.51.100.50/32:8000-8100", "::ffff:198.51.100.50", true)]
    public async Task GatewayDeniesItsOwnAddressesUnlessAnEntryNamesTheAddress(string entry, string destination, bool allowed, int port = 8082)
    {
        string directory = Directory.CreateTempSubdirectory("egress-gwpa-").FullName;
        using var log = new LogCapture();
        using var echo = new EchoServer();
        int dialed = 0;
        var endpoint = TunnelEndpoint.Parse($"unix:{directory}/tunnel.sock");
        var policy = EgressPolicy.Create(true, entry.Split(';'), new AllowlistCache());
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
            await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse(destination), port), null));
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
