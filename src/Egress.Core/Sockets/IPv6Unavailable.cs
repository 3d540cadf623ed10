using System.Net;
using System.Net.Sockets;

namespace Egress.Sockets;

/// <summary>The one rule both listeners (the proxy and the DNS forwarder) use to tell "IPv6 is unavailable here", which
/// they skip with a warning, from a bind that failed for another reason, which is an error.</summary>
internal static class IPv6Unavailable
{
    /// <summary>Whether creating or binding a socket on <paramref name="address"/> failed because IPv6 is unavailable:
    /// compiled out (EAFNOSUPPORT), or disabled, which leaves no <c>::1</c> on lo (EADDRNOTAVAIL for an IPv6 loopback
    /// address). For another IPv6 address EADDRNOTAVAIL means that no interface has it, a configuration error (ip(7),
    /// ipv6(7)).</summary>
    /// <param name="address">The address that was being bound.</param>
    /// <param name="error">The error it failed with.</param>
    /// <returns>True when the failure means only that IPv6 is unavailable.</returns>
    internal static bool Explains(IPEndPoint address, SocketException error) =>
        address.AddressFamily == AddressFamily.InterNetworkV6
        && (error.SocketErrorCode == SocketError.AddressFamilyNotSupported
            || (error.SocketErrorCode == SocketError.AddressNotAvailable && IPAddress.IsLoopback(address.Address)));
}
