using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;

namespace Egress.Enclave.Check;

/// <summary>What <c>egress-enclave check</c> is asked about: a name or an IP address, with an optional port, and a
/// note when the text could be read another way.</summary>
internal sealed record CheckTarget(string? Name, IPAddress? Address, int? Port, string? Note = null)
{
    /// <summary>Parses NAME, IP, NAME:PORT, IPv4:PORT, [IPv6] or [IPv6]:PORT (a bare IPv6 address has no port).</summary>
    public static bool TryParse(string text, [NotNullWhen(true)] out CheckTarget? target, [NotNullWhen(false)] out string? error)
    {
        target = null;
        error = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "the target is empty";
            return false;
        }

        if (!text.StartsWith('[') && IPAddress.TryParse(text, out var bare) && (text.Contains(':', StringComparison.Ordinal) || text == bare.ToString()))
        {
            target = new CheckTarget(null, bare, null, PortLikeNote(text, bare));
            return true;
        }

        if (text.Contains("://", StringComparison.Ordinal))
        {
            error = $"'{text}' is a URL; give the name or address it connects to (NAME, NAME:PORT, IP, IPv4:PORT or [IPv6]:PORT)";
            return false;
        }

        if ((text.StartsWith("*.", StringComparison.Ordinal) && text.Length > 2 && text[2] != ':') || text == "*" || text.StartsWith("*:", StringComparison.Ordinal))
        {
            // An entry, not a destination: a trial got only "contains invalid character '*'".
            string which = text.StartsWith("*.", StringComparison.Ordinal) ? $"a name under it, such as a.{text[2..]}" : $"any name, such as example.com{text[1..]}";
            error = $"'{text}' is a wildcard entry; check takes one name or address that a connection would use: check {which}";
            return false;
        }

        if (text.Contains('/', StringComparison.Ordinal))
        {
            error = $"'{text}' is a network or a path; check takes one name or address (e.g. one address of the network)";
            return false;
        }

        string host = text;
        int? port = null;
        // [IPv6] and [IPv6]:PORT: a port only after the bracket (the address's own colons are not one).
        int colon = text.StartsWith('[') ? (text.IndexOf("]:", StringComparison.Ordinal) is var end and >= 0 ? end + 1 : -1) : text.LastIndexOf(':');
        if (colon >= 0)
        {
            host = text[..colon];
            if (!int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int number) || number is < 1 or > 65535)
            {
                error = $"'{text[(colon + 1)..]}' is not a port (1-65535)";
                return false;
            }

            port = number;
        }

        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            if (!IPAddress.TryParse(host[1..^1], out var v6) || v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            {
                error = $"'{host}' is not an IPv6 address";
                return false;
            }

            target = new CheckTarget(null, v6, port);
            return true;
        }

        if (IPAddress.TryParse(host, out var v4) && host == v4.ToString())
        {
            target = new CheckTarget(null, v4, port);
            return true;
        }

        if (host.Length == 0 || host.Contains(':', StringComparison.Ordinal) || host.Contains('[', StringComparison.Ordinal))
        {
            error = $"'{text}' is not NAME, IP, NAME:PORT, IPv4:PORT or [IPv6]:PORT";
            return false;
        }

        string name = host.EndsWith('.') ? host[..^1] : host;
        if (Egress.Policy.DestinationRuleParser.CheckHostName(name) is { } problem)
        {
            error = $"'{host}' is neither an IP address nor a host name: {problem}";
            return false;
        }

        target = new CheckTarget(name, null, port);
        return true;
    }

    /// <summary>From a new user's trial: <c>check 2001:db8::1:443</c> checks the address 2001:db8::1:443, portless,
    /// where the user meant port 443 of 2001:db8::1. When the last group is all digits and a port, and the text before it
    /// is an IPv6 address too, the note says how the text was read and how to write the other reading.</summary>
    private static string? PortLikeNote(string text, IPAddress address)
    {
        int colon = text.LastIndexOf(':');
        ReadOnlySpan<char> last = text.AsSpan(colon + 1);
        if (address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6 || last.Length == 0 || last.ContainsAnyExcept("0123456789")
            || !int.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535
            || !IPAddress.TryParse(text.AsSpan(0, colon), out IPAddress? shorter) || shorter.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
        {
            return null;
        }

        return string.Create(
            CultureInfo.InvariantCulture,
            $"'{text}' is read as the IPv6 address {address}, with no port (a bare IPv6 address has none); for port {port} of {shorter}, write [{shorter}]:{port}");
    }
}
