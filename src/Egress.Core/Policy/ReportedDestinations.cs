using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Egress.Diagnostics;

namespace Egress.Policy;

/// <summary>
/// Turns the would-deny lines of <see cref="EgressMode.Report"/> (<see cref="WouldDenyLog"/>, from either host, in text
/// or JSON log format, mixed with any other lines) into <c>egress.destinations</c> entries that would allow what was
/// reported: a name with the ports its connections used (<c>api.example.com:443,8443</c>), a name with no port when only
/// its DNS questions were seen (every port), and an address with its ports when no name is known
/// (<c>203.0.113.7:443</c>, <c>[2001:db8::1]:443</c>). Denials report mode keeps (internal ranges, the parent's own
/// addresses) are not would-deny lines and never become entries. The result is sorted (ordinal) and unique.
/// </summary>
internal sealed partial class ReportedDestinations
{
    // A DNS name as the lines write it (no trailing dot); braces etc. excluded, so a JSON line's message template
    // ("{Name}") does not match.
    private const string NamePattern = @"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?";

    private readonly SortedDictionary<string, SortedSet<int>> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<IPAddress, SortedSet<int>> _addresses = [];

    [GeneratedRegex(WouldDenyLog.Prefix + @"connection to (?:\[(?<v6>[0-9A-Fa-f:.]+)\]|(?<v4>[0-9.]+)):(?<port>[0-9]{1,5})(?: \(name (?<name>" + NamePattern + @")\))?: ", RegexOptions.CultureInvariant)]
    private static partial Regex ConnectionLine();

    [GeneratedRegex(WouldDenyLog.Prefix + @"DNS (?<name>" + NamePattern + @") [A-Za-z0-9]+: ", RegexOptions.CultureInvariant)]
    private static partial Regex QuestionLine();

    /// <summary>Gets how many would-deny lines were read (lines holding at least one).</summary>
    public int Lines { get; private set; }

    /// <summary>Reads one log line; lines that are not would-deny lines are ignored.</summary>
    /// <param name="line">The line.</param>
    public void Add(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        if (!line.Contains(WouldDenyLog.Prefix, StringComparison.Ordinal))
        {
            return;
        }

        bool counted = false; // a JSON line holds its message twice (Message, State.Message)
        foreach (Match match in ConnectionLine().Matches(line))
        {
            string text = match.Groups["v6"].Success ? match.Groups["v6"].Value : match.Groups["v4"].Value;
            if (!IPAddress.TryParse(text, out IPAddress? address)
                || !int.TryParse(match.Groups["port"].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
            {
                continue;
            }

            counted = true;
            if (match.Groups["name"].Success && IsName(match.Groups["name"].Value, out string? name))
            {
                PortsOf(_names, name).Add(port);
            }
            else
            {
                PortsOf(_addresses, address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address).Add(port);
            }
        }

        foreach (Match match in QuestionLine().Matches(line))
        {
            if (IsName(match.Groups["name"].Value, out string? name))
            {
                counted = true;
                PortsOf(_names, name);
            }
        }

        if (counted)
        {
            Lines++;
        }
    }

    /// <summary>Reads every line of <paramref name="reader"/>.</summary>
    /// <param name="reader">The log.</param>
    public void AddAll(TextReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            Add(line);
        }
    }

    /// <summary>The entries, sorted and unique: e.g. <c>203.0.113.7:443</c>, <c>api.example.com:443,8443</c>, <c>cdn.example.com</c>.</summary>
    /// <returns>The entries.</returns>
    public IReadOnlyList<string> Entries()
    {
        var entries = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var (name, ports) in _names)
        {
            entries.Add(ports.Count == 0 ? name : name + ":" + string.Join(',', ports));
        }

        foreach (var (address, ports) in _addresses)
        {
            string host = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
            entries.Add(host + ":" + string.Join(',', ports));
        }

        return [.. entries];
    }

    /// <summary>Whether <paramref name="text"/> is a valid exact-host entry; <paramref name="name"/> is its canonical
    /// form (lower case).</summary>
    private static bool IsName(string text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? name)
    {
        name = null;
        if (!DestinationRule.TryParse(text, out DestinationRule? rule, out _) || rule.Kind != DestinationRuleKind.ExactHost)
        {
            return false;
        }

        name = rule.Text;
        return true;
    }

    private static SortedSet<int> PortsOf<TKey>(IDictionary<TKey, SortedSet<int>> entries, TKey key)
    {
        if (!entries.TryGetValue(key, out SortedSet<int>? ports))
        {
            entries[key] = ports = [];
        }

        return ports;
    }
}
