using System.Net;
using Tomlyn;
using Tomlyn.Parsing;
using Tomlyn.Syntax;

namespace Egress.Configuration;

/// <summary>
/// Reads <c>enclave.toml</c> text into an <see cref="EgressConfiguration"/>. Tomlyn's syntax parser checks the TOML
/// (syntax, duplicate keys, redefined tables); Tomlyn's event parser then yields every key and value with its line and
/// column, which are bound here by hand so that every error, unknown keys included, points at its place in the file.
/// </summary>
internal sealed class ConfigurationReader
{
    private const long MaxMilliseconds = int.MaxValue;
    private const long MaxSeconds = int.MaxValue / 1000;

    private static readonly string[] TopLevelKeys = ["egress", "tunnel", "enclave", "host", "dns", "relay", .. EvervaultKeys.Names];
    private static readonly string[] EgressKeys = ["enabled", "destinations"];
    private static readonly string[] TunnelKeys = ["enclave_endpoint", "host_endpoint", "status_timeout_ms"];
    private static readonly string[] EnclaveKeys = ["proxy_listen", "dns_listen", "dns_query_timeout_ms", "netfilter"];
    private static readonly string[] HostKeys = ["connect_timeout_ms", "header_timeout_ms", "dns_upstreams", "dns_timeout_ms", "metrics_listen", "max_streams", "keepalive_idle_seconds", "keepalive_interval_seconds", "keepalive_probes"];
    private static readonly string[] DnsKeys = ["ttl_floor_seconds", "grace_seconds", "cache_max_entries"];
    private static readonly string[] RelayKeys = ["idle_timeout_seconds", "shutdown_drain_seconds", "splice"];

    private readonly string text;
    private readonly string sourceName;
    private readonly Dictionary<string, SourceLocation> locations = new(StringComparer.Ordinal);
    private TomlParser? parser;

    private bool egressEnabled;
    private string[] destinations = [];
    private string enclaveEndpoint = "vsock://3:4433";
    private string hostEndpoint = "vsock://any:4433";
    private long statusTimeoutMs = 10_000;
    private IPEndPoint[] proxyListen = [new(IPAddress.Loopback, 4444), new(IPAddress.IPv6Loopback, 4444)];
    private IPEndPoint[] dnsListen = [new(IPAddress.Loopback, 53), new(IPAddress.IPv6Loopback, 53)];
    private long dnsQueryTimeoutMs = 5_000;
    private NetfilterBackend netfilter = NetfilterBackend.Auto;
    private long connectTimeoutMs = 5_000;
    private long headerTimeoutMs = 5_000;
    private IPEndPoint[] dnsUpstreams = [];
    private long dnsTimeoutMs = 2_000;
    private long ttlFloorSeconds = 30;
    private long graceSeconds = 60;
    private long cacheMaxEntries = 65_536;
    private long maxStreams;
    private long keepAliveIdleSeconds = 60;
    private long keepAliveIntervalSeconds = 10;
    private long keepAliveProbes = 6;
    private long idleTimeoutSeconds = 3_600;
    private long shutdownDrainSeconds = 10;
    private bool splice = true;
    private IPEndPoint? metricsListen;

    public ConfigurationReader(string text, string sourceName)
    {
        this.text = text;
        this.sourceName = sourceName;
    }

    private TomlParser Parser => parser ?? throw new InvalidOperationException("The reader has not started.");

    public EgressConfiguration Read()
    {
        try
        {
            ThrowOnSyntaxError();

            parser = TomlParser.Create(text, new TomlParserOptions { Mode = TomlParserMode.Strict }, new TomlSerializerOptions { SourceName = sourceName });
            Expect(TomlParseEventKind.StartDocument);
            Expect(TomlParseEventKind.StartTable);
            ReadRoot();
        }
        catch (TomlException exception)
        {
            // Not expected once the syntax parser accepted the text; kept so that no Tomlyn error escapes unlocated.
            throw new ConfigurationException(new SourceLocation(sourceName, exception.Line ?? 0, exception.Column ?? 0), null, exception.Message.Trim());
        }

        ValidateTimeoutOrder();
        return Build();
    }

    private void ThrowOnSyntaxError()
    {
        // Tomlyn does not list its diagnostics in source order (an unclosed array at the end of the file comes first);
        // the earliest one is the cause.
        DiagnosticMessage? first = null;
        foreach (DiagnosticMessage diagnostic in SyntaxParser.Parse(text, sourceName, validate: true).Diagnostics)
        {
            if (diagnostic.Kind == DiagnosticMessageKind.Error && (first is null || diagnostic.Span.Offset < first.Span.Offset))
            {
                first = diagnostic;
            }
        }

        if (first is not null)
        {
            TextPosition start = first.Span.Start;
            throw new ConfigurationException(new SourceLocation(sourceName, start.Line + 1, start.Column + 1), null, first.Message);
        }
    }

    private void ReadRoot()
    {
        for (TomlParseEvent current = Next(); current.Kind != TomlParseEventKind.EndTable; current = Next())
        {
            string name = Parser.GetPropertyName();
            SourceLocation keyLocation = Here(current);
            switch (name)
            {
                case "egress":
                case "tunnel":
                case "enclave":
                case "host":
                case "dns":
                case "relay":
                    ReadSection(name, keyLocation);
                    break;
                default:
                    if (!EvervaultKeys.Contains(name))
                    {
                        throw UnknownKey(name, name, keyLocation, TopLevelKeys);
                    }

                    SkipValue();
                    break;
            }
        }
    }

    private void ReadSection(string section, SourceLocation sectionLocation)
    {
        TomlParseEvent value = Next();
        if (value.Kind != TomlParseEventKind.StartTable)
        {
            throw new ConfigurationException(ValueLocation(value, sectionLocation), section, $"expected a table, found {Describe(value.Kind)}");
        }

        for (TomlParseEvent current = Next(); current.Kind != TomlParseEventKind.EndTable; current = Next())
        {
            string key = Parser.GetPropertyName();
            string path = section + "." + key;
            SourceLocation keyLocation = Here(current);
            switch (section)
            {
                case "egress":
                    ReadEgressKey(key, path, keyLocation);
                    break;
                case "tunnel":
                    ReadTunnelKey(key, path, keyLocation);
                    break;
                case "enclave":
                    ReadEnclaveKey(key, path, keyLocation);
                    break;
                case "host":
                    ReadHostKey(key, path, keyLocation);
                    break;
                case "dns":
                    ReadDnsKey(key, path, keyLocation);
                    break;
                default:
                    ReadRelayKey(key, path, keyLocation);
                    break;
            }
        }
    }

    private void ReadEgressKey(string key, string path, SourceLocation keyLocation)
    {
        switch (key)
        {
            case "enabled":
                egressEnabled = ReadBoolean(path, keyLocation);
                break;
            case "destinations":
                destinations = [.. ReadStringArray(path, keyLocation).Select(entry => entry.Value)];
                break;
            case "ports":
                throw new ConfigurationException(keyLocation, path, "Evervault's v0 'ports' setting is not supported by Egress; remove it");
            default:
                throw UnknownKey(key, path, keyLocation, EgressKeys);
        }
    }

    private void ReadTunnelKey(string key, string path, SourceLocation keyLocation)
    {
        switch (key)
        {
            case "enclave_endpoint":
                enclaveEndpoint = ReadString(path, keyLocation);
                break;
            case "host_endpoint":
                hostEndpoint = ReadString(path, keyLocation);
                break;
            case "status_timeout_ms":
                statusTimeoutMs = ReadInteger(path, keyLocation, 1, MaxMilliseconds);
                break;
            default:
                throw UnknownKey(key, path, keyLocation, TunnelKeys);
        }
    }

    private void ReadEnclaveKey(string key, string path, SourceLocation keyLocation)
    {
        switch (key)
        {
            case "proxy_listen":
                proxyListen = ReadEndPoints(path, keyLocation, listen: true);
                break;
            case "dns_listen":
                dnsListen = ReadEndPoints(path, keyLocation, listen: true);
                break;
            case "dns_query_timeout_ms":
                dnsQueryTimeoutMs = ReadInteger(path, keyLocation, 1, MaxMilliseconds);
                break;
            case "netfilter":
                netfilter = ReadNetfilter(path, keyLocation);
                break;
            default:
                throw UnknownKey(key, path, keyLocation, EnclaveKeys);
        }
    }

    private void ReadHostKey(string key, string path, SourceLocation keyLocation)
    {
        switch (key)
        {
            case "connect_timeout_ms":
                connectTimeoutMs = ReadInteger(path, keyLocation, 1, MaxMilliseconds);
                break;
            case "header_timeout_ms":
                headerTimeoutMs = ReadInteger(path, keyLocation, 1, MaxMilliseconds);
                break;
            case "dns_upstreams":
                dnsUpstreams = ReadEndPoints(path, keyLocation, listen: false);
                break;
            case "dns_timeout_ms":
                dnsTimeoutMs = ReadInteger(path, keyLocation, 1, MaxMilliseconds);
                break;
            case "metrics_listen":
                metricsListen = ReadEndPoint(path, keyLocation);
                break;
            case "max_streams":
                maxStreams = ReadInteger(path, keyLocation, 0, int.MaxValue);
                break;
            case "keepalive_idle_seconds":
                // Linux caps TCP_KEEPIDLE and TCP_KEEPINTVL at 32767 s (MAX_TCP_KEEPIDLE) and TCP_KEEPCNT at 127.
                keepAliveIdleSeconds = ReadInteger(path, keyLocation, 0, 32_767);
                break;
            case "keepalive_interval_seconds":
                keepAliveIntervalSeconds = ReadInteger(path, keyLocation, 1, 32_767);
                break;
            case "keepalive_probes":
                keepAliveProbes = ReadInteger(path, keyLocation, 1, 127);
                break;
            default:
                throw UnknownKey(key, path, keyLocation, HostKeys);
        }
    }

    private void ReadDnsKey(string key, string path, SourceLocation keyLocation)
    {
        switch (key)
        {
            case "ttl_floor_seconds":
                ttlFloorSeconds = ReadInteger(path, keyLocation, 0, MaxSeconds);
                break;
            case "grace_seconds":
                graceSeconds = ReadInteger(path, keyLocation, 0, MaxSeconds);
                break;
            case "cache_max_entries":
                cacheMaxEntries = ReadInteger(path, keyLocation, 1, int.MaxValue);
                break;
            default:
                throw UnknownKey(key, path, keyLocation, DnsKeys);
        }
    }

    private void ReadRelayKey(string key, string path, SourceLocation keyLocation)
    {
        switch (key)
        {
            case "idle_timeout_seconds":
                idleTimeoutSeconds = ReadInteger(path, keyLocation, 0, MaxSeconds);
                break;
            case "shutdown_drain_seconds":
                shutdownDrainSeconds = ReadInteger(path, keyLocation, 0, 3_600);
                break;
            case "splice":
                splice = ReadBoolean(path, keyLocation);
                break;
            default:
                throw UnknownKey(key, path, keyLocation, RelayKeys);
        }
    }

    private NetfilterBackend ReadNetfilter(string path, SourceLocation keyLocation)
    {
        string value = ReadString(path, keyLocation);
        return value switch
        {
            "auto" => NetfilterBackend.Auto,
            "nft" => NetfilterBackend.Nft,
            "legacy" => NetfilterBackend.Legacy,
            _ => throw new ConfigurationException(
                locations[path],
                path,
                $"expected \"auto\", \"nft\" (nf_tables, iptables-nft) or \"legacy\" (iptables-legacy), found \"{value}\""),
        };
    }

    private bool ReadBoolean(string path, SourceLocation keyLocation)
    {
        TomlParseEvent value = ReadScalar(path, keyLocation, TomlParseEventKind.Boolean);
        return value.GetBoolean();
    }

    private string ReadString(string path, SourceLocation keyLocation)
    {
        ReadScalar(path, keyLocation, TomlParseEventKind.String);
        return Parser.GetString();
    }

    private long ReadInteger(string path, SourceLocation keyLocation, long min, long max)
    {
        TomlParseEvent value = ReadScalar(path, keyLocation, TomlParseEventKind.Integer);
        long number = value.GetInt64();
        if (number < min || number > max)
        {
            throw new ConfigurationException(Here(value), path, $"must be between {min} and {max}, found {number}");
        }

        return number;
    }

    private TomlParseEvent ReadScalar(string path, SourceLocation keyLocation, TomlParseEventKind expected)
    {
        TomlParseEvent value = Next();
        SourceLocation location = ValueLocation(value, keyLocation);
        if (value.Kind != expected)
        {
            throw new ConfigurationException(location, path, $"expected {Describe(expected)}, found {Describe(value.Kind)}");
        }

        locations[path] = location;
        return value;
    }

    private List<(string Value, SourceLocation Location)> ReadStringArray(string path, SourceLocation keyLocation)
    {
        TomlParseEvent array = Next();
        SourceLocation arrayLocation = ValueLocation(array, keyLocation);
        if (array.Kind != TomlParseEventKind.StartArray)
        {
            throw new ConfigurationException(arrayLocation, path, $"expected an array of strings, found {Describe(array.Kind)}");
        }

        locations[path] = arrayLocation;
        var entries = new List<(string, SourceLocation)>();
        for (TomlParseEvent element = Next(); element.Kind != TomlParseEventKind.EndArray; element = Next())
        {
            SourceLocation location = ValueLocation(element, arrayLocation);
            if (element.Kind != TomlParseEventKind.String)
            {
                throw new ConfigurationException(location, path, $"expected a string, found {Describe(element.Kind)}");
            }

            locations[$"{path}[{entries.Count}]"] = location;
            entries.Add((Parser.GetString(), location));
        }

        return entries;
    }

    private IPEndPoint ReadEndPoint(string path, SourceLocation keyLocation)
    {
        string text = ReadString(path, keyLocation);
        return EndPointText.TryParseListen(text, out IPEndPoint? endPoint, out string? problem)
            ? endPoint
            : throw new ConfigurationException(locations[path], path, $"invalid listen address \"{text}\": {problem}");
    }

    private IPEndPoint[] ReadEndPoints(string path, SourceLocation keyLocation, bool listen)
    {
        List<(string Value, SourceLocation Location)> entries = ReadStringArray(path, keyLocation);
        if (listen && entries.Count == 0)
        {
            throw new ConfigurationException(locations[path], path, "must list at least one address");
        }

        var endPoints = new IPEndPoint[entries.Count];
        for (int i = 0; i < entries.Count; i++)
        {
            (string entry, SourceLocation location) = entries[i];
            IPEndPoint? endPoint;
            string? problem;
            bool parsed = listen
                ? EndPointText.TryParseListen(entry, out endPoint, out problem)
                : EndPointText.TryParseUpstream(entry, out endPoint, out problem);
            if (!parsed)
            {
                string what = listen ? "listen address" : "DNS upstream";
                throw new ConfigurationException(location, path, $"invalid {what} \"{entry}\": {problem}");
            }

            if (Array.IndexOf(endPoints, endPoint, 0, i) >= 0)
            {
                throw new ConfigurationException(location, path, $"\"{entry}\" is listed twice");
            }

            endPoints[i] = endPoint!;
        }

        return endPoints;
    }

    private void SkipValue()
    {
        int depth = 0;
        do
        {
            switch (Next().Kind)
            {
                case TomlParseEventKind.StartTable:
                case TomlParseEventKind.StartArray:
                    depth++;
                    break;
                case TomlParseEventKind.EndTable:
                case TomlParseEventKind.EndArray:
                    depth--;
                    break;
            }
        }
        while (depth > 0);
    }

    private void ValidateTimeoutOrder()
    {
        if (statusTimeoutMs > connectTimeoutMs)
        {
            return;
        }

        // Point at whichever of the two the file sets, preferring the status timeout (defaults satisfy the rule).
        string key = locations.ContainsKey("tunnel.status_timeout_ms") ? "tunnel.status_timeout_ms" : "host.connect_timeout_ms";
        throw new ConfigurationException(
            locations[key],
            key,
            $"tunnel.status_timeout_ms ({statusTimeoutMs}) must be greater than host.connect_timeout_ms ({connectTimeoutMs}), or the enclave gives up before the host reports");
    }

    private EgressConfiguration Build() => new(
        sourceName,
        new EgressSection(egressEnabled, Array.AsReadOnly(destinations)),
        new TunnelSection(enclaveEndpoint, hostEndpoint, TimeSpan.FromMilliseconds(statusTimeoutMs)),
        new EnclaveSection(Array.AsReadOnly(proxyListen), Array.AsReadOnly(dnsListen), TimeSpan.FromMilliseconds(dnsQueryTimeoutMs), netfilter),
        new HostSection(TimeSpan.FromMilliseconds(connectTimeoutMs), TimeSpan.FromMilliseconds(headerTimeoutMs), Array.AsReadOnly(dnsUpstreams), TimeSpan.FromMilliseconds(dnsTimeoutMs), metricsListen, (int)maxStreams,
            TimeSpan.FromSeconds(keepAliveIdleSeconds), TimeSpan.FromSeconds(keepAliveIntervalSeconds), (int)keepAliveProbes),
        new DnsSection(TimeSpan.FromSeconds(ttlFloorSeconds), TimeSpan.FromSeconds(graceSeconds), (int)cacheMaxEntries),
        new RelaySection(idleTimeoutSeconds == 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds(idleTimeoutSeconds), TimeSpan.FromSeconds(shutdownDrainSeconds), splice),
        locations);

    private ConfigurationException UnknownKey(string key, string path, SourceLocation keyLocation, string[] known)
    {
        // A near miss, or a duration key without its unit or with another unit (status_timeout, idle_timeout_ms).
        string? suggestion = known.FirstOrDefault(candidate =>
            EditDistance(key, candidate) <= 2 || WithoutUnit(key).SequenceEqual(WithoutUnit(candidate)));
        return new ConfigurationException(keyLocation, path, suggestion is null ? "unknown key" : $"unknown key; did you mean '{suggestion}'?");
    }

    private static ReadOnlySpan<char> WithoutUnit(string key) =>
        key.EndsWith("_ms", StringComparison.Ordinal) ? key.AsSpan(0, key.Length - 3)
        : key.EndsWith("_seconds", StringComparison.Ordinal) ? key.AsSpan(0, key.Length - 8)
        : key;

    private static int EditDistance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
                current[j] = Math.Min(substitution, Math.Min(previous[j], current[j - 1]) + 1);
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }

    private static string Describe(TomlParseEventKind kind) => kind switch
    {
        TomlParseEventKind.String => "a string",
        TomlParseEventKind.Integer => "an integer",
        TomlParseEventKind.Float => "a float",
        TomlParseEventKind.Boolean => "a boolean",
        TomlParseEventKind.DateTime => "a date-time",
        TomlParseEventKind.StartArray => "an array",
        TomlParseEventKind.StartTable => "a table",
        _ => kind.ToString(),
    };

    private TomlParseEvent Next() =>
        Parser.MoveNext() ? Parser.Current : throw new InvalidOperationException("Tomlyn's event stream ended early.");

    private void Expect(TomlParseEventKind kind)
    {
        TomlParseEventKind actual = Next().Kind;
        if (actual != kind)
        {
            throw new InvalidOperationException($"Tomlyn's event stream gave {actual} where {kind} was expected.");
        }
    }

    private SourceLocation Here(TomlParseEvent current) => new(sourceName, current.Line, current.Column);

    // Table headers ([section]) and arrays of tables ([[section]]) start without a position of their own.
    private SourceLocation ValueLocation(TomlParseEvent value, SourceLocation keyLocation) =>
        value.Line > 0 ? Here(value) : keyLocation;
}
