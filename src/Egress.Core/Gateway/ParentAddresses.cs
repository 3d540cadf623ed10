using System.Collections.Concurrent;
using System.Collections.Frozen;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Egress.Policy;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Egress.Gateway;

/// <summary>
/// The parent's own addresses: every unicast address of every network interface (IPv4 and IPv6), each with its
/// interface's name, and every prefix the kernel delivers locally without an interface holding its addresses (routes
/// of type <c>local</c> or <c>anycast</c> in the local, main and default tables: AnyIP, <c>ip route add local
/// 2001:db8:5::/64 dev lo</c>; <see cref="LocalRouteReader"/> says why no other table), kept current: re-read as soon
/// as the kernel reports that an address, a route or a routing rule was added or removed
/// (<see cref="LocalRouteReader.OpenChangeSocket"/>; a burst of reports is one re-read), and at least every
/// <see cref="RefreshInterval"/> all the same. Beyond those, each destination asked about is looked up as the kernel
/// routes this process's connection to it (<see cref="LocalRouteReader.Lookup"/>: the rules in their order, then the
/// longest prefix of the first table that has a route), so a <c>local</c> route of another table that a rule sends it
/// to counts too; the answers are kept until the next re-read. A connection to one of them reaches a service on the
/// parent itself (an IPv6 address of an EC2 parent is usually global, so the internal ranges do not cover it), so the
/// gateway denies them unless a single-address entry names the address on the port. Lookups of a known or already looked-up
/// address take no lock and allocate only the text of a match by a route read; a first lookup of a destination costs
/// one rtnetlink request. Re-reads take turns, so a slow one never writes its older reading over a newer one.
/// </summary>
internal sealed class ParentAddresses : IDisposable
{
    /// <summary>The longest a change can go unnoticed when the kernel's report is lost (or cannot be received).</summary>
    internal static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(30);

    /// <summary>At most this many destinations' route answers are kept between re-reads; past it, the kept ones go.</summary>
    internal const int MaxLookedUp = 4096;

    private static readonly UInt128 UnspecifiedV4 = AddressValue.Of(IPAddress.Any);
    private static readonly UInt128 UnspecifiedV6 = AddressValue.Of(IPAddress.IPv6Any);

    private readonly Func<IEnumerable<(string Interface, IPAddress Address)>> _read;
    private readonly Func<IEnumerable<LocalRoute>> _readRoutes;
    private readonly Func<IPAddress, (LocalRoute Route, uint Table)?> _lookupRoute;
    private readonly ITimer _timer;
    private readonly Socket? _changes;
    private readonly ILogger _logger;
    private readonly Lock _refreshing = new();
    private Known _known = new(FrozenDictionary<UInt128, string>.Empty, [], new());
    private volatile bool _disposed;

    /// <summary>Reads the addresses and local routes now and keeps them current.</summary>
    /// <param name="read">Lists (interface, address) pairs; null: this machine's interfaces, re-read also when the
    /// kernel reports a change.</param>
    /// <param name="time">The clock of the periodic refresh.</param>
    /// <param name="readRoutes">Lists the local and anycast routes; null: this machine's (<see cref="LocalRouteReader"/>)
    /// when <paramref name="read"/> is null too, none otherwise (tests of a fake interface list).</param>
    /// <param name="lookupRoute">The local or anycast route the kernel would deliver a destination by, or null; null:
    /// this machine's (<see cref="LocalRouteReader.Lookup"/>) when <paramref name="read"/> is null too, none
    /// otherwise.</param>
    /// <param name="logger">Where a changed set and a lost watch are logged; null: nowhere.</param>
    /// <param name="changes">A socket whose every datagram reports a change (owned: disposed with this); null: this
    /// machine's rtnetlink reports (<see cref="LocalRouteReader.OpenChangeSocket"/>) when <paramref name="read"/> is
    /// null too, none otherwise.</param>
    /// <exception cref="IOException">The addresses or routes cannot be read now, or their changes cannot be watched: an
    /// empty set would deny none of them, so the gateway does not start without them. Reading and watching need
    /// rtnetlink (getifaddrs, a route dump, a subscription), which a sandbox without <c>AF_NETLINK</c> refuses.</exception>
    public ParentAddresses(
        Func<IEnumerable<(string Interface, IPAddress Address)>>? read,
        TimeProvider time,
        Func<IEnumerable<LocalRoute>>? readRoutes = null,
        Func<IPAddress, (LocalRoute Route, uint Table)?>? lookupRoute = null,
        ILogger? logger = null,
        Socket? changes = null)
    {
        _read = read ?? InterfaceAddresses.Read;
        _readRoutes = readRoutes ?? (read is null ? LocalRouteReader.Read : static () => []);
        _lookupRoute = lookupRoute ?? (read is null ? LocalRouteReader.Lookup : static _ => null);
        _logger = logger ?? NullLogger.Instance;
        try
        {
            // Subscribed before the first reading, so that no change after it goes unreported.
            _changes = changes ?? (read is null ? LocalRouteReader.OpenChangeSocket() : null);
            Volatile.Write(ref _known, ReadAll());
        }
        catch (Exception ex) when (ex is NetworkInformationException or IOException)
        {
            _changes?.Dispose();
            throw new IOException(
                $"cannot read this machine's own addresses ({ex.Message}), which egress-host denies to the enclave; it does not start without them "
                + "(they are read over rtnetlink: under systemd, RestrictAddressFamilies= must allow AF_NETLINK)", ex);
        }

        _timer = time.CreateTimer(_ => Refresh(), null, RefreshInterval, RefreshInterval);
        if (_changes is not null)
        {
            _ = WatchAsync(_changes);
        }
    }

    /// <summary>Gets how many addresses are known now (local routes not counted).</summary>
    public int Count => Volatile.Read(ref _known).Addresses.Count;

    /// <summary>The addresses and their interfaces, then the local routes that cover more than those addresses, for a
    /// log line, e.g. <c>198.18.0.1 (eth0), 2001:db8::1 (eth0), local route 2001:db8:5::/64 (lo)</c>.</summary>
    public override string ToString() => Describe(Volatile.Read(ref _known));

    private static string Describe(Known known) => string.Join(", ", Items(known));

    private static IEnumerable<string> Items(Known known) =>
        known.Addresses.Select(pair => $"{AddressValue.ToAddress(pair.Key)} ({pair.Value})").Order(StringComparer.Ordinal)
            .Concat(known.Routes.Select(route => $"local route {route.Route.Prefix} ({route.Route.Interface})").Order(StringComparer.Ordinal));

    private static string List(IEnumerable<string> items) => string.Join(", ", items.Order(StringComparer.Ordinal)) is { Length: > 0 } text ? text : "none";

    /// <summary>Whether <paramref name="address"/> (IPv4-mapped IPv6 counts as IPv4) is one of the parent's, or one of
    /// its IPv4 addresses in another IPv6 form that carries one (NAT64 <c>64:ff9b::/96</c>, IPv4-compatible,
    /// IPv4-translated, 6to4: <c>eth0, 198.18.0.1 via NAT64 64:ff9b::/96</c>); the interface that holds it, or for an
    /// address only a local route covers, the route's interface and the route
    /// (<c>lo, local route 2001:db8:5::/64</c>; with <c>in table 100</c> for a table other than local, main and default).
    /// The unspecified address (0.0.0.0, ::) is the parent's: Linux connects it to this machine. A route lookup that
    /// fails (rtnetlink could not be asked or did not answer in 2 s, or answered something malformed) counts as the
    /// parent's, uncached: the connection is refused rather than let through unchecked.</summary>
    public bool TryGetInterface(IPAddress address, out string? interfaceName)
    {
        Known known = Volatile.Read(ref _known);
        UInt128 value = AddressValue.Of(address);
        if (IsKnown(known, value, out interfaceName))
        {
            return true;
        }

        if (value == UnspecifiedV4 || value == UnspecifiedV6)
        {
            interfaceName = "lo, the unspecified address, which a connect sends to this machine";
            return true;
        }

        // One of the parent's IPv4 addresses written in a form a translator on the way turns back into it (a NAT64
        // gateway: 64:ff9b::198.18.0.1 reached the parent's own listener, in a red-team trial with a stand-in one).
        if (InternalRanges.GetEmbeddedIPv4(value, out UInt128 embedded) is var form and not InternalRanges.EmbeddedIPv4Form.None
            && IsKnown(known, embedded, out string? embeddedInterface))
        {
            interfaceName = $"{embeddedInterface}, {AddressValue.ToAddress(embedded)} {InternalRanges.Via(form)}";
            return true;
        }

        if (!known.LookedUp.TryGet(value, out interfaceName))
        {
            try
            {
                interfaceName = _lookupRoute(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address) is var (route, table)
                    ? $"{route.Interface}, local route {route.Prefix}"
                        + (table is LocalRouteReader.TableLocal or LocalRouteReader.TableMain or LocalRouteReader.TableDefault ? "" : $" in table {table}")
                    : null;
            }
            catch (IOException ex)
            {
                interfaceName = $"unknown: its route could not be looked up, so it counts as one ({ex.Message})";
                return true;
            }

            known.LookedUp.Add(value, interfaceName);
        }

        return interfaceName is not null;
    }

    /// <summary>Forgets the route answers of the current reading (whichever is current when this runs).</summary>
    private void DropRouteAnswers()
    {
        Known known;
        do
        {
            known = Volatile.Read(ref _known);
        }
        while (Interlocked.CompareExchange(ref _known, known with { LookedUp = new() }, known) != known);
    }

    /// <summary>Whether <paramref name="value"/> is an address of an interface or in a local route read.</summary>
    private static bool IsKnown(Known known, UInt128 value, out string? interfaceName)
    {
        if (known.Addresses.TryGetValue(value, out interfaceName))
        {
            return true;
        }

        foreach (var (block, route) in known.Routes)
        {
            if (block.Contains(value))
            {
                interfaceName = $"{route.Interface}, local route {route.Prefix}";
                return true;
            }
        }

        return false;
    }

    /// <summary>Re-reads the addresses and routes, one re-read at a time; what was added and removed is logged. A
    /// failure keeps the previous set (never an empty one by mistake).</summary>
    public void Refresh()
    {
        lock (_refreshing)
        {
            Known previous = Volatile.Read(ref _known);
            try
            {
                Known current = ReadAll();
                Volatile.Write(ref _known, current);
                if (_logger.IsEnabled(LogLevel.Information))
                {
                    HashSet<string> before = [.. Items(previous)], after = [.. Items(current)];
                    if (!before.SetEquals(after))
                    {
                        GatewayLog.ParentAddressesChanged(_logger, List(after.Except(before)), List(before.Except(after)));
                    }
                }
            }
            catch (Exception ex) when (ex is NetworkInformationException or IOException)
            {
                // Keep what was read; the next change report or timer tick tries again. The route answers go all the
                // same: none is kept past a re-read, failed or not.
                Volatile.Write(ref _known, previous with { LookedUp = new() });
            }
        }
    }

    /// <summary>Re-reads whenever the kernel reports a change: the reports that arrived meanwhile are taken off first, so
    /// that a burst (an address brings its routes) is one re-read. Ends when disposed; a socket that fails otherwise is
    /// logged, and the periodic refresh is all that is left.</summary>
    private async Task WatchAsync(Socket changes)
    {
        byte[] report = new byte[16 * 1024]; // only that one came; what it says is read again from the kernel
        try
        {
            while (true)
            {
                try
                {
                    await changes.ReceiveAsync(report, SocketFlags.None).ConfigureAwait(false);

                    // The route answers go first: until the re-read below has written a new reading, a destination is
                    // asked of the kernel again, whose answer has the change already. (A review measured "not the
                    // parent" still answered up to 39 ms after a local route was added, with 10,000 routes to re-read.)
                    DropRouteAnswers();
                    while (changes.Poll(0, SelectMode.SelectRead))
                    {
                        changes.Receive(report);
                    }
                }
                catch (SocketException ex) when (ex.SocketErrorCode is SocketError.NoBufferSpaceAvailable or SocketError.MessageSize && !_disposed)
                {
                    // Reports were dropped (the socket's buffer was full) or one was larger than the buffer: a change
                    // all the same.
                    DropRouteAnswers();
                }

                Refresh();
            }
        }
        catch (Exception ex) when (_disposed && ex is ObjectDisposedException or SocketException or OperationCanceledException)
        {
        }
        catch (Exception ex)
        {
            GatewayLog.ParentAddressesNotWatched(_logger, ex.Message, (int)RefreshInterval.TotalSeconds);
        }
    }

    private Known ReadAll()
    {
        var addresses = new Dictionary<UInt128, string>();
        foreach (var (name, address) in _read())
        {
            addresses.TryAdd(AddressValue.Of(address), name);
        }

        // An interface's address has a local route of its own; only the routes that cover more are kept to scan.
        var routes = new List<(AddressBlock, LocalRoute)>();
        foreach (LocalRoute route in _readRoutes())
        {
            var block = AddressBlock.From(route.Prefix);
            bool single = route.Prefix.PrefixLength == (route.Prefix.BaseAddress.AddressFamily == AddressFamily.InterNetwork ? 32 : 128);
            if (!(single && addresses.ContainsKey(block.First)) && !routes.Exists(known => known.Item2.Prefix == route.Prefix))
            {
                routes.Add((block, route));
            }
        }

        return new Known(addresses.ToFrozenDictionary(), [.. routes], new());
    }

    /// <summary>One consistent reading: the interfaces' addresses and the local routes beyond them, and the route
    /// lookups of other destinations made since (the interface name and route of a local one, null for another).</summary>
    private sealed record Known(FrozenDictionary<UInt128, string> Addresses, (AddressBlock Block, LocalRoute Route)[] Routes, RouteAnswers LookedUp);

    /// <summary>The route lookups of one reading: a destination's interface and route when the kernel delivers it here,
    /// null when not. At most <see cref="MaxLookedUp"/>: past it the kept ones go.</summary>
    private sealed class RouteAnswers
    {
        private readonly ConcurrentDictionary<UInt128, string?> _answers = new();
        private int _count;

        public bool TryGet(UInt128 destination, out string? interfaceName) => _answers.TryGetValue(destination, out interfaceName);

        public void Add(UInt128 destination, string? interfaceName)
        {
            if (Interlocked.Increment(ref _count) > MaxLookedUp)
            {
                _answers.Clear();
                Volatile.Write(ref _count, 1);
            }

            _answers.TryAdd(destination, interfaceName);
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _changes?.Dispose();
        _timer.Dispose();
    }
}
