using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Egress.Policy;

/// <summary>The syntax of destination entries; returns a reason instead of throwing.</summary>
internal static partial class DestinationRuleParser
{
    private const int MaxNameLength = 253;
    private const int MaxLabelLength = 63;
    private const string WildcardPlacement = "'*' may only stand alone (\"*\") or be the whole leftmost label (\"*.example.com\")";

    /// <summary>Parses <paramref name="entry"/>; returns <see langword="null"/> on success, else the reason.</summary>
    public static string? TryParse(string entry, out DestinationRule? rule)
    {
        rule = null;
        if (entry.Length == 0)
        {
            return "entry is empty";
        }

        foreach (char c in entry)
        {
            if (char.IsWhiteSpace(c))
            {
                // "api.example.com:443, 8443": name the spelling meant when the spaces are only around the entry or a
                // ',' (a new user's trial); "api example.com" may be anything, and around a ':' joining may make
                // another destination ("2001:db8::1 :443" is not the address 2001:db8::1:443).
                string joined = SpacesAroundCommas().Replace(entry.Trim(), ",");
                return joined.Length > 0 && !joined.Any(char.IsWhiteSpace) && TryParse(joined, out _) is null
                    ? $"contains whitespace; write \"{joined}\""
                    : "contains whitespace";
            }
        }

        if (entry.Contains("://", StringComparison.Ordinal))
        {
            return "URLs are not supported; give the host only";
        }

        string? reason = SplitPorts(entry, out string text, out PortSet? ports);
        if (reason is not null)
        {
            return reason;
        }

        reason = ParseHost(text, entry[text.Length..], out rule);
        if (rule is not null && ports is not null)
        {
            rule = rule.WithPorts(ports);
        }

        return reason;
    }

    /// <summary>
    /// Splits <c>HOST:PORTS</c> (<c>[IPv6]:PORTS</c>, <c>NETWORK/LEN:PORTS</c>) into the host part and its ports; a bare
    /// IPv6 address (several colons, no brackets) has none.
    /// </summary>
    private static string? SplitPorts(string entry, out string host, out PortSet? ports)
    {
        host = entry;
        ports = null;
        string? portsText = null;
        if (entry.StartsWith('['))
        {
            int close = entry.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
            {
                return "has an unbalanced '['";
            }

            string rest = entry[(close + 1)..];
            if (rest.StartsWith('/'))
            {
                return $"write an IPv6 network without brackets (\"{entry[1..close]}{rest}\")";
            }

            if (rest.Length > 0 && rest[0] != ':')
            {
                return $"unexpected \"{rest}\" after ']' (write [IPv6]:PORTS)";
            }

            host = entry[..(close + 1)];
            portsText = rest.Length > 0 ? rest[1..] : null;
        }
        else
        {
            int slash = entry.LastIndexOf('/');
            int colon = slash >= 0 ? entry.IndexOf(':', slash) : entry.IndexOf(':', StringComparison.Ordinal);
            if (colon >= 0 && (slash >= 0 || colon == entry.LastIndexOf(':')))
            {
                host = entry[..colon];
                portsText = entry[(colon + 1)..];
            }
        }

        return portsText is null ? null : PortSet.TryParse(portsText, out ports);
    }

    /// <summary>The rule for an entry's host part (<paramref name="entry"/>), or why there is none.</summary>
    /// <param name="entry">The host part: a name, wildcard, address or network.</param>
    /// <param name="portsText">What follows the host in the entry (<c>:443</c>), for the punycode form an error says.</param>
    /// <param name="rule">The rule, without its ports.</param>
    /// <returns>Null, or why the host part is not valid.</returns>
    private static string? ParseHost(string entry, string portsText, out DestinationRule? rule)
    {
        rule = null;
        if (entry == "*.")
        {
            // Not the root-dotted form of "*": a wildcard whose domain was cut off, which must not allow everything.
            return "names no domain after \"*.\" (write \"*.example.com\" for a domain's subdomains, or \"*\" for every destination)";
        }

        string text = entry.EndsWith('.') ? entry[..^1] : entry;
        if (text.Length == 0)
        {
            return "names no host";
        }

        if (text == "*")
        {
            rule = new DestinationRule(DestinationRuleKind.AllowAll, "*", null, null, null);
            return null;
        }

        if (text.Contains('/', StringComparison.Ordinal))
        {
            return ParseNetwork(text, out rule);
        }

        if (text.Contains('%', StringComparison.Ordinal))
        {
            return "scope ids (%) are not supported";
        }

        if (text.StartsWith('['))
        {
            return text.EndsWith(']') ? ParseAddress(text[1..^1], requireIPv6: true, out rule) : "has an unbalanced '['";
        }

        if (text.Contains(':', StringComparison.Ordinal))
        {
            int first = text.IndexOf(':', StringComparison.Ordinal);
            if (first > 0 && text.AsSpan(0, first).Contains('.'))
            {
                // "1.2.3.4:443:80": no IPv6 address has a '.' before its first ':'.
                return $"has more than one ':' after \"{text[..first]}\"; list its ports after one ':' (\"{text[..first]}:{text[(first + 1)..].Replace(':', ',')}\")";
            }

            return ParseAddress(text, requireIPv6: true, out rule);
        }

        if (IsDigitsAndDots(text))
        {
            return ParseAddress(text, requireIPv6: false, out rule);
        }

        if (text.StartsWith("*.", StringComparison.Ordinal))
        {
            string domain = text[2..];
            string? domainReason = domain.Contains('*', StringComparison.Ordinal) ? WildcardPlacement : CheckHostName(domain, "*.", portsText);
            if (domainReason is null)
            {
                domain = domain.ToLowerInvariant();
                rule = new DestinationRule(DestinationRuleKind.WildcardSubdomain, "*." + domain, domain, null, null);
            }

            return domainReason;
        }

        if (text.Contains('*', StringComparison.Ordinal))
        {
            return WildcardPlacement;
        }

        string? reason = CheckHostName(text, suffix: portsText);
        if (reason is null)
        {
            string host = text.ToLowerInvariant();
            rule = new DestinationRule(DestinationRuleKind.ExactHost, host, host, null, null);
        }

        return reason;
    }

    private static string? ParseAddress(string text, bool requireIPv6, out DestinationRule? rule)
    {
        rule = null;
        string? reason = TryParseAddress(text, requireIPv6, out IPAddress? address);
        if (address is not null)
        {
            rule = new DestinationRule(DestinationRuleKind.Address, address.ToString(), null, address, null);
        }

        return reason;
    }

    private static string? ParseNetwork(string text, out DestinationRule? rule)
    {
        rule = null;
        int slash = text.LastIndexOf('/');
        string addressText = text[..slash];
        string prefixText = text[(slash + 1)..];
        bool isIPv6 = addressText.Contains(':', StringComparison.Ordinal);
        if (addressText.Any(c => char.IsLetter(c) && !char.IsAsciiHexDigit(c)))
        {
            // "example.com/", "api.example.com:443/": a name with a path, not a network.
            return $"'/' is only for a network (ADDRESS/LENGTH), and \"{addressText}\" is not an IP address; a host takes no path";
        }

        string? reason = TryParseAddress(addressText, isIPv6, out IPAddress? address);
        if (address is null)
        {
            return reason;
        }

        int maxPrefix = isIPv6 ? 128 : 32;
        if (prefixText.Length is 0 or > 3 || !IsDigits(prefixText)
            || !int.TryParse(prefixText, NumberStyles.None, CultureInfo.InvariantCulture, out int prefix) || prefix > maxPrefix)
        {
            return $"prefix length \"/{prefixText}\" is not a number from 0 to {maxPrefix}";
        }

        if (prefix == 0)
        {
            return "a /0 network would also open internal ranges such as instance metadata; use \"*\" for all public destinations";
        }

        var network = new IPNetwork(MaskHostBits(address, prefix), prefix);
        if (!network.BaseAddress.Equals(address))
        {
            return $"has host bits set after /{prefix} (did you mean \"{network}\"?)";
        }

        rule = new DestinationRule(DestinationRuleKind.Network, network.ToString(), null, null, network);
        return null;
    }

    private static IPAddress MaskHostBits(IPAddress address, int prefix)
    {
        byte[] bytes = address.GetAddressBytes();
        for (int bit = prefix; bit < bytes.Length * 8; bit++)
        {
            bytes[bit / 8] &= (byte)~(0x80 >> (bit % 8));
        }

        return new IPAddress(bytes);
    }

    private static string? TryParseAddress(string text, bool requireIPv6, out IPAddress? address)
    {
        address = null;
        if (requireIPv6)
        {
            if (text.Contains('[', StringComparison.Ordinal) || text.Contains(']', StringComparison.Ordinal)
                || text.Contains('%', StringComparison.Ordinal)
                || !IPAddress.TryParse(text, out IPAddress? parsed) || parsed.AddressFamily != AddressFamily.InterNetworkV6)
            {
                return "is not a valid IPv6 address";
            }

            address = parsed;
            return null;
        }

        // Strict dotted decimal: IPAddress.TryParse would also take "10" (0.0.0.10), "0x7f.1" and octal "010".
        string[] parts = text.Split('.');
        if (parts.Length != 4)
        {
            return "is not a valid IPv4 address (expected four dotted decimal numbers)";
        }

        Span<byte> bytes = stackalloc byte[4];
        for (int i = 0; i < 4; i++)
        {
            string part = parts[i];
            if (part.Length is 0 or > 3 || !IsDigits(part)
                || !byte.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out bytes[i]))
            {
                return "is not a valid IPv4 address (each part must be a number from 0 to 255)";
            }

            if (part.Length > 1 && part[0] == '0')
            {
                return "is not a valid IPv4 address (leading zeros are ambiguous: octal or decimal?)";
            }
        }

        address = new IPAddress(bytes);
        return null;
    }

    /// <summary>Why <paramref name="name"/> is not a host name as an entry may give it (labels of ASCII letters, digits,
    /// hyphens and underscores, lengths per RFC 1035, a last label that is not all digits), or null when it is one. A
    /// name with non-ASCII characters is told its punycode (A-label) form when it has a valid one.</summary>
    /// <param name="name">The name.</param>
    /// <param name="prefix">What precedes the name in the text given (<c>*.</c> of a wildcard entry), for the punycode form said.</param>
    /// <param name="suffix">What follows it (an entry's <c>:443</c>), for the punycode form said.</param>
    internal static string? CheckHostName(string name, string prefix = "", string suffix = "")
    {
        if (name.Length > MaxNameLength)
        {
            return $"name is longer than {MaxNameLength} characters";
        }

        string lastLabel = string.Empty;
        foreach (Range range in name.AsSpan().Split('.'))
        {
            string label = name[range];
            if (label.Length == 0)
            {
                return "has an empty label";
            }

            if (label.Length > MaxLabelLength)
            {
                return $"label \"{label}\" is longer than {MaxLabelLength} characters";
            }

            foreach (char c in label)
            {
                if (!char.IsAscii(c))
                {
                    return PunycodeOf(name) is { } ascii
                        ? $"contains non-ASCII character '{c}'; use the punycode (xn--) form \"{prefix}{ascii}{suffix}\""
                        : $"contains non-ASCII character '{c}'; use the punycode (xn--) form";
                }

                if (!char.IsAsciiLetterOrDigit(c) && c is not '-' and not '_')
                {
                    return $"contains invalid character '{c}'";
                }
            }

            if (label[0] == '-' || label[^1] == '-')
            {
                return $"label \"{label}\" starts or ends with a hyphen";
            }

            lastLabel = label;
        }

        return IsDigits(lastLabel)
            ? $"last label \"{lastLabel}\" is numeric: neither a host name nor a dotted decimal IPv4 address"
            : null;
    }

    /// <summary>The punycode (IDNA A-label) form of <paramref name="name"/> (<see cref="IdnMapping"/>: <c>bücher.example</c>
    /// is <c>xn--bcher-kva.example</c>), in lower case; null when it has none or it is no valid host name either.</summary>
    private static string? PunycodeOf(string name)
    {
        string ascii;
        try
        {
            ascii = new IdnMapping().GetAscii(name).ToLowerInvariant();
        }
        catch (ArgumentException)
        {
            return null; // e.g. an empty label, or a label over 63 characters once converted
        }

        return CheckHostName(ascii) is null ? ascii : null;
    }

    private static bool IsDigits(string text) => text.AsSpan().IndexOfAnyExceptInRange('0', '9') < 0;

    private static bool IsDigitsAndDots(string text)
    {
        foreach (char c in text)
        {
            if (!char.IsAsciiDigit(c) && c != '.')
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>A ',' with the whitespace around it.</summary>
    [GeneratedRegex(@"\s*,\s*", RegexOptions.CultureInvariant)]
    private static partial Regex SpacesAroundCommas();
}
