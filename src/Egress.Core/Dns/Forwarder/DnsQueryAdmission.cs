using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;

namespace Egress.Dns.Forwarder;

/// <summary>
/// The enclave forwarder's admission of forwarded queries: at most <see cref="Limit"/> in flight to the parent
/// across all clients, and at most <see cref="PerClientLimit"/> per UDP client (source address and port; a
/// DNS-over-TCP connection is bounded by its own <see cref="DnsStreamOptions.MaxInFlight"/>). A query beyond either
/// is answered SERVFAIL at once instead of being queued behind queries that may never be answered: one client whose
/// upstream black-holes cannot fill the tunnel streams and make every other client wait. A quarter of the overall
/// limit is kept for light UDP clients (at most <see cref="LightClient"/> queries in flight, as a stub resolver has):
/// busy clients and every DNS-over-TCP connection, however many, share the rest, so a well-behaved app is still
/// answered while others flood. A TCP connection is never light: the forwarder accepts up to 256 of them
/// (<c>DnsForwarder.MaxTcpConnections</c>), and counting each one's first queries as light let a flood of
/// connections take the whole reserve (the stress suite's scenario 4: 94.7 % of the victim's queries answered). Stub
/// resolvers ask over UDP first; TCP after a truncated answer shares the busy places. All apps of an enclave reach the
/// forwarder from the same loopback address, so many UDP sockets of one app are many light clients: the limits bound
/// what such an app holds, they cannot tell it from many apps.
/// Thread-safe.
/// </summary>
/// <param name="limit">The most forwarded queries in flight across all clients (at least 1).</param>
/// <param name="perClientLimit">The most forwarded queries in flight per UDP client (at least 1).</param>
internal sealed class DnsQueryAdmission(int limit, int perClientLimit)
{
    /// <summary>The most queries one tunnel DNS stream carries at once: a quarter of what the parent answers per
    /// stream (<c>TunnelStreamHandler</c>'s 1,024), so the parent never refuses a query for load.</summary>
    public const int PerStream = 256;

    /// <summary>The most queries in flight per UDP client and per DNS-over-TCP connection: a stub resolver has a few.</summary>
    public const int PerClient = 64;

    /// <summary>The most queries in flight of a client that may use the places kept back from busy clients.</summary>
    public const int LightClient = 4;

    private readonly Dictionary<SocketAddress, int> _perClient = [];
    private int _inFlight;

    /// <summary>Gets the most forwarded queries in flight across all clients.</summary>
    public int Limit { get; } = limit;

    /// <summary>Gets the most forwarded queries in flight per UDP client.</summary>
    public int PerClientLimit { get; } = perClientLimit;

    /// <summary>Gets the forwarded queries in flight now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Gets the most forwarded queries in flight from busy clients together (UDP clients with more than
    /// <see cref="LightClient"/> in flight, and DNS-over-TCP connections): three quarters of <see cref="Limit"/>.</summary>
    public int BusyLimit => Limit - (Limit / 4);

    /// <summary>Takes a place for a forwarded query (give it back with <see cref="Exit"/>), or says why not.</summary>
    /// <param name="clientInFlight">How many queries its client has in flight, this one included.</param>
    /// <param name="udp">Whether the query came over UDP; a DNS-over-TCP connection is never a light client.</param>
    /// <param name="reason">Why the query is refused, naming the limit; null when admitted.</param>
    public bool TryEnter(int clientInFlight, bool udp, [NotNullWhen(false)] out string? reason)
    {
        bool light = udp && clientInFlight <= LightClient;
        int limit = light ? Limit : BusyLimit;
        if (Interlocked.Increment(ref _inFlight) > limit)
        {
            Interlocked.Decrement(ref _inFlight);
            reason = light
                ? string.Create(CultureInfo.InvariantCulture, $"{Limit} queries in flight from all clients")
                : udp
                    ? string.Create(CultureInfo.InvariantCulture, $"{BusyLimit} queries in flight from DNS-over-TCP connections and UDP clients with more than {LightClient} each; this one has {clientInFlight}")
                    : string.Create(CultureInfo.InvariantCulture, $"{BusyLimit} queries in flight from DNS-over-TCP connections and UDP clients with more than {LightClient} each; this is a DNS-over-TCP query");
            return false;
        }

        reason = null;
        return true;
    }

    /// <summary>Gives back a place taken by <see cref="TryEnter"/>.</summary>
    public void Exit() => Interlocked.Decrement(ref _inFlight);

    /// <summary>Takes a place for a query from the UDP client <paramref name="client"/> (give it back with
    /// <see cref="ExitClient"/>), unless it already has <see cref="PerClientLimit"/> in flight.</summary>
    /// <param name="client">The client's address and port; not changed afterwards by the caller.</param>
    /// <returns>The client's queries in flight with this one; 0 when refused.</returns>
    public int TryEnterClient(SocketAddress client)
    {
        lock (_perClient)
        {
            _perClient.TryGetValue(client, out int count);
            if (count >= PerClientLimit)
            {
                return 0;
            }

            _perClient[client] = count + 1;
            return count + 1;
        }
    }

    /// <summary>Gives back a place taken by <see cref="TryEnterClient"/>.</summary>
    public void ExitClient(SocketAddress client)
    {
        lock (_perClient)
        {
            if (_perClient.TryGetValue(client, out int count) && count > 1)
            {
                _perClient[client] = count - 1;
            }
            else
            {
                _perClient.Remove(client);
            }
        }
    }
}
