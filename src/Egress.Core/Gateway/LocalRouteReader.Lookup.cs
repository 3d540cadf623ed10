using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Egress.Gateway;

/// <summary>One destination's route as the kernel chooses it (<c>ip route get fibmatch ADDRESS</c>).</summary>
internal static unsafe partial class LocalRouteReader
{
    /// <summary>RTM_F_FIB_MATCH (Linux 4.13): answer with the matched route as it is in its table, prefix and all.</summary>
    private const uint FlagFibMatch = 0x2000;

    /// <summary>RTM_F_LOOKUP_TABLE (Linux 4.12): name the table the route came from (IPv4 says main without it).</summary>
    private const uint FlagLookupTable = 0x1000;

    private const int PermissionDenied = 13;
    private const int InvalidArgument = 22;
    private const int MessageTooLong = 90;
    private const int NetworkUnreachable = 101;
    private const int HostUnreachable = 113;

    /// <summary>
    /// Asks the kernel which route a connection from this process to <paramref name="destination"/> would take (an
    /// RTM_GETROUTE request with RTA_DST, RTM_F_FIB_MATCH and RTM_F_LOOKUP_TABLE, as <c>ip route get fibmatch</c>): the routing rules
    /// (<c>ip rule</c>, e.g. <c>to 2001:db8:9::/64 lookup 100</c>) and the longest-prefix match apply as they do to
    /// egress-host's own connect, for this process's user and without a firewall mark. Blocking; well under a
    /// millisecond.
    /// </summary>
    /// <param name="destination">The destination (an IPv4-mapped IPv6 address is asked as IPv4).</param>
    /// <returns>The matched route and its table when the kernel would deliver the destination to this machine (type
    /// <c>local</c> or <c>anycast</c>); null for a route that sends it on, or an answer that no route delivers it here
    /// (see <see cref="ParseLookup"/>).</returns>
    /// <exception cref="IOException">rtnetlink refused or did not answer in 2 s, answered with another error, or sent a
    /// malformed message.</exception>
    public static (LocalRoute Route, uint Table)? Lookup(IPAddress destination)
    {
        if (destination.IsIPv4MappedToIPv6)
        {
            destination = destination.MapToIPv4();
        }

        int addressLength = destination.AddressFamily == AddressFamily.InterNetwork ? 4 : 16;
        Span<byte> request = stackalloc byte[HeaderSize + RouteMessageSize + 4 + addressLength];
        uint sequence = WriteRouteRequest(request, request.Length, FlagRequest);
        Span<byte> route = request[HeaderSize..];
        route[0] = addressLength == 4 ? FamilyIPv4 : FamilyIPv6;
        route[1] = (byte)(addressLength * 8);
        BinaryPrimitives.WriteUInt32LittleEndian(route[8..], FlagFibMatch | FlagLookupTable);
        Span<byte> attribute = route[RouteMessageSize..];
        BinaryPrimitives.WriteUInt16LittleEndian(attribute, (ushort)(4 + addressLength));
        BinaryPrimitives.WriteUInt16LittleEndian(attribute[2..], AttributeDestination);
        destination.TryWriteBytes(attribute[4..], out _);

        (LocalRoute, uint)? answer = null;
        Exchange(request, $"the route to {destination}", 8 * 1024, received => ParseLookup(received, sequence, NameOf, out answer));
        return answer;
    }

    /// <summary>Parses one receive's worth of answers to the route request <paramref name="sequence"/>; messages of
    /// other sequences are skipped.</summary>
    /// <param name="messages">What one receive returned: whole messages, each padded to 4 bytes.</param>
    /// <param name="sequence">The request's sequence number.</param>
    /// <param name="interfaceName">The name of an interface index.</param>
    /// <param name="answer">The route and its table when the answer is a local or anycast route; null for another route
    /// or none.</param>
    /// <returns>True when the request's answer was among the messages.</returns>
    /// <exception cref="IOException">A message is malformed (as for <see cref="Parse"/>), or the kernel answered with an
    /// error that does not say where the destination goes. These say it goes nowhere here, and are answers (null):
    /// ENETUNREACH and EHOSTUNREACH (no route, or an unreachable one), EINVAL (a blackhole route or rule), EACCES (a
    /// prohibit one), EMSGSIZE (a route too large to describe, which a multipath route can be and a local one, whose
    /// scope allows one next hop only, cannot).</exception>
    internal static bool ParseLookup(ReadOnlySpan<byte> messages, uint sequence, Func<int, string> interfaceName, out (LocalRoute Route, uint Table)? answer)
    {
        answer = null;
        while (messages.Length > 0)
        {
            ReadOnlySpan<byte> body = NextMessage(ref messages, out ushort type, out _, out uint messageSequence);
            if (messageSequence != sequence)
            {
                continue;
            }

            switch (type)
            {
                case MessageError:
                    int error = body.Length >= 4 ? -BinaryPrimitives.ReadInt32LittleEndian(body) : 0;
                    if (error is NetworkUnreachable or HostUnreachable or InvalidArgument or PermissionDenied or MessageTooLong)
                    {
                        return true; // no route, or one that drops it or is not local: nothing is delivered here
                    }

                    throw new IOException($"rtnetlink refused the route request: {Marshal.GetPInvokeErrorMessage(error)} (errno {error})");
                case NewRoute:
                    if (ReadRoute(body, interfaceName, out uint table) is { } route)
                    {
                        answer = (route, table);
                    }

                    return true;
            }
        }

        return false;
    }
}
