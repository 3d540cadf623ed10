using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Egress.Configuration;

/// <summary>
/// The one grammar of IP endpoints the product accepts, in the file and on the command line alike (listen addresses,
/// <c>metrics_listen</c> / <c>--metrics-listen</c>, <c>dns_upstreams</c> / <c>--dns-upstream</c>, the host part of a
/// <c>tcp://</c> tunnel endpoint): <c>IPv4:PORT</c> with the IPv4 address as a full dotted quad, <c>[IPv6]:PORT</c>,
/// PORT 1-65535 in decimal; for DNS upstreams also a bare address (port 53). Host names are refused: nothing
/// resolves names inside an enclave. A failure gives the problem in words, without the text itself.
/// </summary>
internal static class EndPointText
{
    /// <summary>Parses a listen address; the port is required and must be 1–65535.</summary>
    public static bool TryParseListen(string text, [NotNullWhen(true)] out IPEndPoint? endPoint, [NotNullWhen(false)] out string? problem) =>
        TryParse(text, defaultPort: null, out endPoint, out problem);

    /// <summary>Whether <paramref name="endPoint"/> is among the first <paramref name="count"/> of <paramref name="endPoints"/>:
    /// a list (of listen addresses, of upstreams) names each endpoint once, in the file and on the command line alike
    /// (<c>198.18.0.53</c> and <c>198.18.0.53:53</c> are the same upstream).</summary>
    public static bool IsListedBefore(IPEndPoint?[] endPoints, int count, IPEndPoint endPoint) => Array.IndexOf(endPoints, endPoint, 0, count) >= 0;

    /// <summary>The problem of an endpoint <see cref="IsListedBefore"/> found.</summary>
    public static string ListedTwice(string text) => $"\"{text}\" is listed twice";

    /// <summary>Parses a DNS upstream; a missing port means 53. The address must be one a query can be sent to and
    /// answered from: not the unspecified address (0.0.0.0, ::), the IPv4 broadcast address or a multicast one.</summary>
    public static bool TryParseUpstream(string text, [NotNullWhen(true)] out IPEndPoint? endPoint, [NotNullWhen(false)] out string? problem)
    {
        if (!TryParse(text, defaultPort: 53, out endPoint, out problem))
        {
            return false;
        }

        problem = NotAResolver(endPoint.Address);
        if (problem is not null)
        {
            endPoint = null;
            return false;
        }

        return true;
    }

    /// <summary>Whether <paramref name="address"/> is the unspecified address of its family (0.0.0.0, <c>::</c>): a
    /// listener there takes every interface's traffic.</summary>
    internal static bool IsUnspecified(IPAddress address) => address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any);

    private static string? NotAResolver(IPAddress address)
    {
        if (IsUnspecified(address))
        {
            return "the unspecified address (\"any\") is no resolver: write the resolver's own address";
        }

        if (address.Equals(IPAddress.Broadcast))
        {
            return "the broadcast address is no resolver: write the resolver's own address";
        }

        bool multicast = address.AddressFamily == AddressFamily.InterNetwork
            ? (address.GetAddressBytes()[0] & 0xF0) == 0xE0 // 224.0.0.0/4 (RFC 5771)
            : address.IsIPv6Multicast;
        return multicast ? "a multicast address (e.g. mDNS) is no resolver that answers forwarded queries: write a unicast address" : null;
    }

    private static bool TryParse(string text, int? defaultPort, [NotNullWhen(true)] out IPEndPoint? endPoint, [NotNullWhen(false)] out string? problem)
    {
        endPoint = null;
        string host;
        string? port = null;
        bool bracketed = text.StartsWith('[');
        if (bracketed)
        {
            int close = text.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
            {
                problem = "missing ']'";
                return false;
            }

            host = text[1..close];
            string rest = text[(close + 1)..];
            if (rest.Length > 0)
            {
                if (rest[0] != ':')
                {
                    problem = "expected ':' and a port after ']'";
                    return false;
                }

                port = rest[1..];
            }
        }
        else
        {
            int colon = text.IndexOf(':', StringComparison.Ordinal);
            if (colon >= 0 && colon == text.LastIndexOf(':'))
            {
                host = text[..colon];
                port = text[(colon + 1)..];
            }
            else
            {
                // No colon (IPv4) or several (a bare IPv6 address, which cannot carry a port).
                host = text;
            }
        }

        if (!TryParseAddress(host, bracketed, out IPAddress? address, out problem))
        {
            return false;
        }

        if (defaultPort is not null && port is null && !bracketed && PortLikeLastGroup(host) is var (head, likePort))
        {
            // "::1:53" is the address ::0.1.0.83 (port 53 by default), or port 53 of ::1: never guessed.
            problem = string.Create(
                CultureInfo.InvariantCulture,
                $"ambiguous: for port {likePort} of {head} write \"[{head}]:{likePort}\"; for the address {host} itself write \"[{host}]\"");
            return false;
        }

        int portNumber;
        if (port is not null)
        {
            if (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out portNumber) || portNumber is < 1 or > 65535)
            {
                problem = "port must be a number between 1 and 65535";
                return false;
            }
        }
        else if (defaultPort is int fallback)
        {
            portNumber = fallback;
        }
        else
        {
            problem = address.AddressFamily == AddressFamily.InterNetworkV6
                ? "missing port (write \"[address]:port\")"
                : "missing port (write \"address:port\")";
            return false;
        }

        endPoint = new IPEndPoint(address, portNumber);
        return true;
    }

    /// <summary>
    /// For a bare IPv6 address that may have been meant as <c>ADDRESS:PORT</c>, the address (as written) and port of that
    /// reading; null for any other text. The rule is narrow: the text is an IPv6 address written without brackets, with
    /// <c>::</c>; its last group is written in decimal digits only, without a leading zero, and is 1-65535; and the text
    /// before that group's colon is itself an IPv6 address. So <c>2001:db8::1:443</c> (2001:db8::1, 443) and
    /// <c>::1:53</c> (::1, 53) are read both ways, while <c>2001:db8::1</c> and <c>fd00::53</c> (<c>fd00:</c> is not an
    /// address) are not.
    /// </summary>
    internal static (string Address, int Port)? PortLikeLastGroup(string text)
    {
        int colon = text.LastIndexOf(':');
        if (text.StartsWith('[') || !text.Contains("::", StringComparison.Ordinal) || colon < 0
            || !IPAddress.TryParse(text, out IPAddress? whole) || whole.AddressFamily != AddressFamily.InterNetworkV6)
        {
            return null;
        }

        ReadOnlySpan<char> last = text.AsSpan(colon + 1);
        if (last.Length is 0 or > 5 || last[0] == '0' || last.ContainsAnyExceptInRange('0', '9')
            || !int.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port > 65535)
        {
            return null;
        }

        string head = text[..colon];
        return IPAddress.TryParse(head, out IPAddress? address) && address.AddressFamily == AddressFamily.InterNetworkV6 ? (head, port) : null;
    }

    private static bool TryParseAddress(string host, bool bracketed, [NotNullWhen(true)] out IPAddress? address, [NotNullWhen(false)] out string? problem)
    {
        problem = null;
        if (!IPAddress.TryParse(host, out address))
        {
            problem = "not an IP address";
            return false;
        }

        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            // The hosts' IPv6 sockets are IPv6 only: binding one to ::ffff:a.b.c.d fails with EINVAL at start, and a
            // DNS upstream or tunnel peer written so is never reached, although the file was found valid.
            if (address.IsIPv4MappedToIPv6)
            {
                problem = $"an IPv4-mapped IPv6 address, which an IPv6 socket here cannot use: write the IPv4 address {address.MapToIPv4()}";
                address = null;
                return false;
            }

            return true;
        }

        // IPAddress.TryParse also takes shorthand like "127.1" or "10"; only the dotted quad is accepted.
        if (bracketed || !string.Equals(address.ToString(), host, StringComparison.Ordinal))
        {
            problem = bracketed ? "brackets are only for IPv6 addresses" : "not a dotted-quad IPv4 address";
            address = null;
            return false;
        }

        return true;
    }
}
