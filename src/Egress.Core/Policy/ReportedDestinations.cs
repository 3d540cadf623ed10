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
/// (<c>203.0.113.7:443</c>, <c>[2001:db8::1]:443</c>). The server names of TLS connections report mode relayed although
/// the check would refuse them (<see cref="Proxy.ProxyLog"/> event 126, <see cref="Gateway.GatewayLog"/> event 226:
/// <c>... would be refused (egress.mode = "report": relayed): server name other.example.com is not allowed by any
/// entry ...</c>) become entries with their port too.
/// <para>What report mode still denied is never proposed, even when a would-deny line reported it first (the enclave
/// reports a connection to the parent's own address, which egress-host then denies): an address and port either host
/// denied with <c>...; report mode does not relax internal addresses</c> (internal ranges, the parent's own addresses),
/// a name whose connection was so denied (the line's <c>(name ...)</c> or <c>(for ...)</c>, or a would-deny connection
/// to that address and port under the name), and a name whose DNS answer was refused as rebinding (<c>DNS rebinding
/// refused: ...</c>). Nor is a name whose DNS questions were only ever answered NXDOMAIN (a resolv.conf search list's)
/// or SERVFAIL and that nothing connected to (unless the parent denied it: GatewayLog 254), nor the address of a TLS
/// connection whose ClientHello no name entry would let through in enforce mode (no server name, ECH, a name the
/// address was not learned from: events 126 and 226): only an entry for the address would, and it switches off the
/// server-name check there for every name on that address. <see cref="LeftOut"/> says what was left out and why. The
/// result is sorted (ordinal) and unique.</para>
/// </summary>
internal sealed partial class ReportedDestinations
{
    // A DNS name as the lines write it (no trailing dot); braces etc. excluded, so a JSON line's message template
    // ("{Name}") does not match.
    private const string NamePattern = @"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?";

    // An IPEndPoint as the lines write it: 203.0.113.7:443 or [2001:db8::1]:443.
    private const string EndPointPattern = @"(?:\[(?<v6>[0-9A-Fa-f:.]+)\]|(?<v4>[0-9.]+)):(?<port>[0-9]{1,5})";

    // PolicyDecision's suffix for a denial report mode keeps.
    private const string KeptSuffix = "; report mode does not relax internal addresses";

    private readonly SortedDictionary<string, SortedSet<int>> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<IPAddress, SortedSet<int>> _addresses = [];
    private readonly Dictionary<IPEndPoint, SortedSet<string>> _namesAt = [];
    private readonly Dictionary<IPEndPoint, Kept> _kept = [];
    private readonly Dictionary<string, string> _rebinding = new(StringComparer.Ordinal);

    // Per name seen in a would-deny DNS line: the one RCODE every such line said it was answered with (NXDOMAIN,
    // SERVFAIL), or null once another was seen (or none: lines before the answer was logged said "resolved").
    private readonly Dictionary<string, string?> _onlyAnswered = new(StringComparer.Ordinal);

    // Names the parent denied (GatewayLog 254: "denied DNS NAME TYPE: parent: ..."): an enclave reporting while its
    // parent enforces; their NXDOMAIN says nothing of whether they exist.
    private readonly HashSet<string> _deniedByParent = new(StringComparer.Ordinal);

    // Endpoints of TLS connections no name entry would let through in enforce mode (no server name, ECH, a name the
    // address was not learned from): only an address entry would, which switches off the server-name check there.
    private readonly Dictionary<IPEndPoint, string> _serverNameBlind = [];

    /// <summary>A denial report mode kept: its reason (without the <c>(interface ...)</c> detail) and the hint it named.</summary>
    private sealed record Kept(string Reason, bool OfParent, SortedSet<string> Hints);

    [GeneratedRegex(WouldDenyLog.Prefix + "connection to " + EndPointPattern + @"(?: \(name (?<name>" + NamePattern + @")\))?: (?:name (?<reasonName>" + NamePattern + @") not in allowlist)?", RegexOptions.CultureInvariant)]
    private static partial Regex ConnectionLine();

    [GeneratedRegex(WouldDenyLog.Prefix + @"DNS (?<name>" + NamePattern + @") [A-Za-z0-9]+: (?:[^;""]*; answered (?<rcode>[A-Z]+)\b)?", RegexOptions.CultureInvariant)]
    private static partial Regex QuestionLine();

    // ProxyLog 126, GatewayLog 226 (a JSON line escapes the quotes): a server name no entry allows (proposed with the
    // port), or a ClientHello enforce would refuse through any name (none, one the address was not learned from: the app
    // did not resolve it through the enclave; ECH): only an entry for the address lets it through.
    [GeneratedRegex("connection to " + EndPointPattern + @"(?: \(for [^)]*\))? would be refused \(egress\.mode = \\?""report\\?"": relayed\): (?:server name (?<name>" + NamePattern + @") is not allowed by any entry|(?<byAddress>the ClientHello has no server name|server name " + NamePattern + @" is not a name the address was learned from|the ClientHello uses encrypted_client_hello))", RegexOptions.CultureInvariant)]
    private static partial Regex ServerNameLine();

    // ProxyLog 104, GatewayLog 202 with a decision report mode kept (PolicyDecision.ToString), and the enclave's line for
    // the parent's denial (ProxyLog 106: "... failed: parent answered DeniedByPolicy: parent: denied: ..."), so that the
    // enclave's log alone already leaves out what the parent denied.
    [GeneratedRegex("connection to " + EndPointPattern + @"(?: \(for (?<name>" + NamePattern + @")\.?\))?(?: failed: parent answered DeniedByPolicy: parent:)? denied: (?<reason>[^;""]*)(?<entry>; an entry naming this one address allows it)?" + KeptSuffix, RegexOptions.CultureInvariant)]
    private static partial Regex KeptLine();

    // GatewayLog 254.
    [GeneratedRegex(@"denied DNS (?<name>" + NamePattern + @") [A-Za-z0-9]+: parent: ", RegexOptions.CultureInvariant)]
    private static partial Regex ParentDnsDenialLine();

    // DnsLog 308.
    [GeneratedRegex(@"DNS rebinding refused: (?<name>" + NamePattern + @")\.? answered (?<address>[0-9A-Fa-f:.]+): ", RegexOptions.CultureInvariant)]
    private static partial Regex RebindingLine();

    /// <summary>Gets how many would-deny lines were read (lines holding at least one), server-name lines included.</summary>
    public int Lines { get; private set; }

    /// <summary>Gets how many log lines the lines read say were dropped (<see cref="DroppedLogLines"/>): would-deny lines
    /// may be among them, so the proposal may miss destinations.</summary>
    public long LinesDropped { get; private set; }

    /// <summary>Reads one log line; lines that are neither would-deny lines nor denials report mode kept are ignored.</summary>
    /// <param name="line">The line.</param>
    public void Add(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        LinesDropped += DroppedLogLines.Count(line);
        AddKept(line);
        bool counted = false; // a JSON line holds its message twice (Message, State.Message)
        if (line.Contains("would be refused", StringComparison.Ordinal))
        {
            foreach (Match match in ServerNameLine().Matches(line))
            {
                if (!TryEndPoint(match, out IPEndPoint? destination))
                {
                    continue;
                }

                if (match.Groups["byAddress"].Success)
                {
                    counted = true;
                    _serverNameBlind.TryAdd(destination, match.Groups["byAddress"].Value);
                }
                else if (IsName(match.Groups["name"].Value, out string? name))
                {
                    counted = true;
                    AddConnection(name, destination);
                }
            }
        }

        if (line.Contains(": parent: ", StringComparison.Ordinal))
        {
            foreach (Match match in ParentDnsDenialLine().Matches(line))
            {
                if (IsName(match.Groups["name"].Value, out string? name))
                {
                    _deniedByParent.Add(name);
                }
            }
        }

        if (line.Contains(WouldDenyLog.Prefix, StringComparison.Ordinal))
        {
            foreach (Match match in ConnectionLine().Matches(line))
            {
                if (!TryEndPoint(match, out IPEndPoint? destination))
                {
                    continue;
                }

                counted = true;
                Group named = match.Groups["name"].Success ? match.Groups["name"] : match.Groups["reasonName"];
                if (named.Success && IsName(named.Value, out string? name))
                {
                    AddConnection(name, destination);
                }
                else
                {
                    PortsOf(_addresses, destination.Address).Add(destination.Port);
                }
            }

            foreach (Match match in QuestionLine().Matches(line))
            {
                if (IsName(match.Groups["name"].Value, out string? name))
                {
                    counted = true;
                    PortsOf(_names, name);
                    string? rcode = match.Groups["rcode"].Success ? match.Groups["rcode"].Value : null;
                    _onlyAnswered[name] = _onlyAnswered.TryGetValue(name, out string? before) && before != rcode ? null : rcode;
                }
            }
        }

        if (counted)
        {
            Lines++;
        }
    }

    /// <summary>The longest line <see cref="AddAll"/> reads, in characters (1 MiB); a host's lines are far shorter.</summary>
    internal const int MaxLineLength = 1 << 20;

    /// <summary>Gets how many lines <see cref="AddAll"/> skipped as longer than <see cref="MaxLineLength"/>.</summary>
    public long LinesTooLong { get; private set; }

    /// <summary>
    /// Reads every line of <paramref name="reader"/> (ended by LF, CR or CR LF, as <see cref="TextReader.ReadLine"/>
    /// reads them), holding at most <see cref="MaxLineLength"/> characters of one: a longer line (no host writes one:
    /// a file that is not a log, <c>/dev/zero</c>) is skipped and counted in <see cref="LinesTooLong"/>, where
    /// <see cref="TextReader.ReadLine"/> would have grown without bound.
    /// </summary>
    /// <param name="reader">The log.</param>
    /// <exception cref="IOException">Reading failed.</exception>
    public void AddAll(TextReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var line = new System.Text.StringBuilder();
        char[] buffer = new char[8192];
        bool skipping = false;
        bool afterCr = false;
        int read;
        while ((read = reader.Read(buffer, 0, buffer.Length)) > 0)
        {
            int start = 0;
            for (int i = 0; i < read; i++)
            {
                char c = buffer[i];
                if (c == '\n' && afterCr)
                {
                    // The LF of a CR LF: that line already ended at its CR.
                    afterCr = false;
                    start = i + 1;
                    continue;
                }

                afterCr = c == '\r';
                if (c is '\n' or '\r')
                {
                    Take(buffer.AsSpan(start, i - start));
                    EndLine();
                    start = i + 1;
                }
            }

            Take(buffer.AsSpan(start, read - start));
        }

        if (line.Length > 0 || skipping)
        {
            EndLine();
        }

        void Take(ReadOnlySpan<char> part)
        {
            if (skipping || part.IsEmpty)
            {
                return;
            }

            if (line.Length + part.Length > MaxLineLength)
            {
                skipping = true;
                line.Clear();
                return;
            }

            line.Append(part);
        }

        void EndLine()
        {
            if (skipping)
            {
                LinesTooLong++;
            }
            else
            {
                Add(line.ToString());
            }

            skipping = false;
            line.Clear();
        }
    }

    /// <summary>The entries, sorted and unique: e.g. <c>203.0.113.7:443</c>, <c>api.example.com:443,8443</c>,
    /// <c>cdn.example.com</c>; without what <see cref="LeftOut"/> lists.</summary>
    /// <returns>The entries.</returns>
    public IReadOnlyList<string> Entries() => Sort().Entries;

    /// <summary>What was reported but left out because report mode still denied it, one line each, sorted: e.g.
    /// <c>198.18.0.1:9464: the parent denied it (an address of the parent itself); an entry naming it would open the parent</c>.</summary>
    /// <returns>The lines.</returns>
    public IReadOnlyList<string> LeftOut() => Sort().LeftOut;

    private (IReadOnlyList<string> Entries, IReadOnlyList<string> LeftOut) Sort()
    {
        var entries = new SortedSet<string>(StringComparer.Ordinal);
        var leftOut = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var (name, ports) in _names)
        {
            if (WhyNot(name, ports) is string why)
            {
                leftOut.Add($"{name}: {why}");
                continue;
            }

            entries.Add(ports.Count == 0 ? name : name + ":" + string.Join(',', ports));
        }

        foreach (var (address, ports) in _addresses)
        {
            string host = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
            var proposed = new SortedSet<int>();
            foreach (int port in ports)
            {
                if (_kept.TryGetValue(new IPEndPoint(address, port), out Kept? kept))
                {
                    leftOut.Add(string.Create(CultureInfo.InvariantCulture, $"{host}:{port}: {Denied(kept, "it")}; {Opens(kept)}"));
                }
                else
                {
                    proposed.Add(port);
                }
            }

            if (proposed.Count > 0)
            {
                entries.Add(host + ":" + string.Join(',', proposed));
            }
        }

        foreach (var (destination, why) in _serverNameBlind)
        {
            if (_addresses.TryGetValue(destination.Address, out SortedSet<int>? ports) && ports.Contains(destination.Port))
            {
                continue; // proposed as an address already: no name of it was known
            }

            // A review: proposed, the address entry would switch off the server-name check for every name on that
            // address and port (a CDN's: domain fronting), so it is the operator's decision, not the tool's.
            string host = destination.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{destination.Address}]" : destination.Address.ToString();
            leftOut.Add(string.Create(CultureInfo.InvariantCulture,
                $"{host}:{destination.Port}: a TLS client reached it and {Lowered(why)}, so no name entry lets it through in enforce mode; the entry \"{host}:{destination.Port}\" would, and it switches off the server-name check there for every name on that address (add it only if that is meant)"));
        }

        return ([.. entries], [.. leftOut]);
    }

    /// <summary>A would-refuse reason as it reads after "and": <c>the ClientHello has no server name</c> →
    /// <c>its ClientHello has no server name</c>.</summary>
    private static string Lowered(string why) => why.StartsWith("the ClientHello", StringComparison.Ordinal) ? "its" + why["the".Length..] : "its ClientHello's " + why;

    /// <summary>Why the name must not be proposed, or null.</summary>
    private string? WhyNot(string name, SortedSet<int> ports)
    {
        if (ports.Count == 0 && !_deniedByParent.Contains(name))
        {
            // A trial: a resolv.conf search list (ndots:5) proposed a.example.test.corp.example and the like, each an
            // entry for every port should the name ever resolve; a second trial: the same while the upstream failed.
            switch (_onlyAnswered.GetValueOrDefault(name))
            {
                case "NXDOMAIN":
                    return "it was only answered NXDOMAIN and nothing connected to it (a search-list name, or a name that does not exist); an entry naming it would allow every port should it ever resolve";
                case "SERVFAIL":
                    return "it was only answered SERVFAIL (no upstream answered) and nothing connected to it, so whether it exists is unknown (a search-list name, or a name the app needs); run report mode again while DNS works";
            }
        }

        foreach (var (destination, kept) in _kept)
        {
            if (kept.Hints.Contains(name) || (_namesAt.TryGetValue(destination, out SortedSet<string>? names) && names.Contains(name)))
            {
                return $"{Denied(kept, $"its connection to {destination}")}; {Opens(kept)}";
            }
        }

        return _rebinding.TryGetValue(name, out string? address)
            ? $"it answered {address}, an internal address report mode never learns (DNS rebinding protection); an entry naming it would ask for an internal address"
            : null;
    }

    private static string Denied(Kept kept, string what) => kept.OfParent
        ? $"the parent denied {what} ({kept.Reason})"
        : $"report mode still denied {what} ({kept.Reason})";

    private static string Opens(Kept kept) => kept.OfParent
        ? "an entry naming it would open the parent"
        : "an entry naming it would open an internal address";

    private void AddKept(string line)
    {
        if (line.Contains(KeptSuffix, StringComparison.Ordinal))
        {
            foreach (Match match in KeptLine().Matches(line))
            {
                if (!TryEndPoint(match, out IPEndPoint? destination))
                {
                    continue;
                }

                string reason = match.Groups["reason"].Value;
                int detail = reason.IndexOf(" (interface ", StringComparison.Ordinal);
                bool ofParent = match.Groups["entry"].Success;
                if (!_kept.TryGetValue(destination, out Kept? kept))
                {
                    _kept[destination] = kept = new Kept(ofParent && detail > 0 ? reason[..detail] : reason, ofParent, new SortedSet<string>(StringComparer.Ordinal));
                }

                if (match.Groups["name"].Success && IsName(match.Groups["name"].Value, out string? name))
                {
                    kept.Hints.Add(name);
                }
            }
        }

        if (line.Contains("DNS rebinding refused: ", StringComparison.Ordinal))
        {
            foreach (Match match in RebindingLine().Matches(line))
            {
                if (IsName(match.Groups["name"].Value, out string? name) && IPAddress.TryParse(match.Groups["address"].Value, out IPAddress? address))
                {
                    _rebinding.TryAdd(name, address.ToString());
                }
            }
        }
    }

    private void AddConnection(string name, IPEndPoint destination)
    {
        PortsOf(_names, name).Add(destination.Port);
        if (!_namesAt.TryGetValue(destination, out SortedSet<string>? names))
        {
            _namesAt[destination] = names = new SortedSet<string>(StringComparer.Ordinal);
        }

        names.Add(name);
    }

    /// <summary>The endpoint a match's <c>v4</c>/<c>v6</c> and <c>port</c> groups write (IPv4-mapped as IPv4).</summary>
    private static bool TryEndPoint(Match match, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IPEndPoint? destination)
    {
        destination = null;
        string text = match.Groups["v6"].Success ? match.Groups["v6"].Value : match.Groups["v4"].Value;
        if (!IPAddress.TryParse(text, out IPAddress? address)
            || !int.TryParse(match.Groups["port"].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
        {
            return false;
        }

        destination = new IPEndPoint(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address, port);
        return true;
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
