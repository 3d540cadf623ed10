using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Egress.Host;

/// <summary>Parses a <c>--dns-upstream</c> value: IPv4, IPv4:PORT, IPv6, [IPv6] or [IPv6]:PORT; the port defaults to 53.</summary>
internal static class DnsUpstreamText
{
    private const int DefaultPort = 53;

    public static bool TryParse(string text, [NotNullWhen(true)] out IPEndPoint? endPoint)
    {
        endPoint = null;
        string host = text;
        string? port = null;
        if (text.StartsWith('['))
        {
            int close = text.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || (close + 1 < text.Length && text[close + 1] != ':'))
            {
                return false;
            }

            host = text[1..close];
            port = close + 1 < text.Length ? text[(close + 2)..] : null;
            if (!IPAddress.TryParse(host, out var v6) || v6.AddressFamily != AddressFamily.InterNetworkV6)
            {
                return false;
            }
        }
        else if (text.Count(c => c == ':') == 1)
        {
            host = text[..text.IndexOf(':', StringComparison.Ordinal)];
            port = text[(host.Length + 1)..];
        }

        if (!IPAddress.TryParse(host, out var address)
            || (address.AddressFamily == AddressFamily.InterNetwork && host != address.ToString()))
        {
            return false;
        }

        int number = DefaultPort;
        if (port is not null && (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out number) || number is < 1 or > 65535))
        {
            return false;
        }

        endPoint = new IPEndPoint(address, number);
        return true;
    }
}
