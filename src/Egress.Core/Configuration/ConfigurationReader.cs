using Egress.Diagnostics;
using System.Globalization;
using System.Net;
using Tomlyn;
using Tomlyn.Parsing;
using Tomlyn.Syntax;

using Egress.Policy;

namespace Egress.Configuration;

/// <summary>
/// Reads <c>enclave.toml</c> text into an <see cref="EgressConfiguration"/>. Tomlyn's syntax parser checks the TOML
/// (syntax, duplicate keys, redefined tables); Tomlyn's event parser then yields every key and value with its line and
/// column. Each key is looked up in <see cref="ConfigurationKeys"/> and read as its description says (type, range),
/// so that every error, unknown keys included, points at its place in the file. The event parser alone does not know
/// TOML's table rules (a table reopened by a sub-table comes again, a redefined <c>[section]</c> passes), hence the
/// validating syntax pass first: two Tomlyn passes over the text, one pass over each value.
/// </summary>
internal sealed class ConfigurationReader
{
    private static readonly string[] TopLevelKeys = [.. ConfigurationKeys.Sections, .. EvervaultKeys.Names];

    private readonly string text;
    private readonly string sourceName;
    private readonly Dictionary<string, SourceLocation> locations = new(StringComparer.Ordinal);
    private readonly Dictionary<ConfigurationKey, object?> values = [];
    private TomlParser? parser;

    public ConfigurationReader(string text, string sourceName)
    {
        this.text = text;
        this.sourceName = sourceName;
    }

    /// <summary>The problem of a file nested deeper than Tomlyn reads (its limit, 64 levels: the file, each table,
    /// key part, array and inline table counting one).</summary>
    internal const string TooDeep = "arrays and tables nested more than 64 levels deep";

    private TomlParser Parser => parser ?? throw new InvalidOperationException("The reader has not started.");

    public EgressConfiguration Read()
    {
        try
        {
            ConfigurationText.Check(text, sourceName);
            ThrowOnSyntaxError();

            parser = TomlParser.Create(text, new TomlParserOptions { Mode = TomlParserMode.Strict }, new TomlSerializerOptions { SourceName = sourceName });
            Expect(TomlParseEventKind.StartDocument);
            Expect(TomlParseEventKind.StartTable);
            ReadRoot();
        }
        catch (TomlException exception)
        {
            // Tomlyn's depth limit (its syntax parser throws it, with no line or column, for arrays or inline tables
            // nested 64 deep), and any other exception it throws, so that no Tomlyn error escapes: its message without
            // its "file(line,col) : error :" prefix, or the limit in this reader's words instead of advice for a
            // library's developers ("Change TomlSerializerOptions.MaxDepth ...").
            string message = exception.Diagnostics is { Count: > 0 } diagnostics ? diagnostics[0].Message : exception.Message.Trim();
            if (message.StartsWith("The maximum depth of ", StringComparison.Ordinal))
            {
                message = TooDeep;
            }

            throw new ConfigurationException(new SourceLocation(sourceName, exception.Line ?? 0, exception.Column ?? 0), null, message);
        }

        ValidateTimeoutOrder();
        ValidateListenAddressesApart();
        return Build();
    }

    private void ThrowOnSyntaxError()
    {
        // Tomlyn does not list its diagnostics in source order (an unclosed array at the end of the file comes first);
        // the earliest one is the cause.
        DocumentSyntax document;
        try
        {
            document = SyntaxParser.Parse(text, sourceName, validate: true);
        }
        catch (ArgumentOutOfRangeException)
        {
            // Tomlyn 2.10 throws this instead of reporting a diagnostic when the text ends inside an escape sequence
            // of a string ("\", "\u12", "\U" at the very end): it formats the end-of-file marker as a character
            // (found by fuzzing, docs/fuzzing.md). The error is at the end of the text.
            int line = text.Count(c => c == '\n');
            throw new ConfigurationException(new SourceLocation(sourceName, line + 1, text.Length - text.LastIndexOf('\n')), null, "the file ends inside an escape sequence of a string");
        }

        DiagnosticMessage? first = null;
        foreach (DiagnosticMessage diagnostic in document.Diagnostics)
        {
            if (diagnostic.Kind == DiagnosticMessageKind.Error && (first is null || diagnostic.Span.Offset < first.Span.Offset))
            {
                first = diagnostic;
            }
        }

        if (first is not null)
        {
            throw TomlSyntaxErrors.Create(first, document, text, sourceName);
        }
    }

    private void ReadRoot()
    {
        for (TomlParseEvent current = Next(); current.Kind != TomlParseEventKind.EndTable; current = Next())
        {
            string name = Parser.GetPropertyName();
            SourceLocation keyLocation = Here(current);
            if (ConfigurationKeys.Sections.Contains(name))
            {
                ReadSection(name, keyLocation);
            }
            else if (EvervaultKeys.Contains(name))
            {
                locations.TryAdd(name, keyLocation); // not read, but it says the file is Evervault's (ConfiguredComponents.GetWarnings)
                SkipEvervaultValue(name);
            }
            else if (Next().Kind == TomlParseEventKind.StartTable && IsTableHeader(keyLocation))
            {
                // A trial read "unknown key (key 'foo')" for a [foo] table (a dotted key, foo.bar = 1, starts a table too).
                throw UnknownTable(name, keyLocation);
            }
            else
            {
                throw UnknownKey(name, name, keyLocation, TopLevelKeys);
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
            ConfigurationKey known = ConfigurationKeys.Find(section, key) ?? throw UnknownKey(key, path, keyLocation, ConfigurationKeys.NamesIn(section));
            values[known] = ReadValue(known, keyLocation);
        }
    }

    private object? ReadValue(ConfigurationKey key, SourceLocation keyLocation) => key.Kind switch
    {
        ConfigurationValueKind.Boolean => ReadBoolean(key.Path, keyLocation),
        ConfigurationValueKind.Integer => ReadInteger(key.Path, keyLocation, key.Min, key.Max),
        ConfigurationValueKind.String => ReadString(key.Path, keyLocation),
        ConfigurationValueKind.Destinations => ReadDestinations(key.Path, keyLocation),
        ConfigurationValueKind.Networks => ReadNetworks(key.Path, keyLocation),
        ConfigurationValueKind.ListenAddresses => ReadEndPoints(key.Path, keyLocation, listen: true),
        ConfigurationValueKind.DnsUpstreams => ReadEndPoints(key.Path, keyLocation, listen: false),
        ConfigurationValueKind.ListenAddress => ReadEndPoint(key.Path, keyLocation),
        ConfigurationValueKind.Ports => ReadPorts(key.Path, keyLocation),
        ConfigurationValueKind.Choice => ReadChoice(key.Path, keyLocation, key.Choices!),
        ConfigurationValueKind.Enclaves => ReadEnclaves(key.Path, keyLocation),
        ConfigurationValueKind.AuditLog => ReadAuditLog(key.Path, keyLocation),
        _ => throw new InvalidOperationException($"{key.Path} has no reader for {key.Kind}."),
    };

    // "stdout" or an absolute path: a relative one would depend on the directory the host happens to start in.
    private string ReadAuditLog(string path, SourceLocation keyLocation)
    {
        string value = ReadString(path, keyLocation);
        if (value == Audit.AuditLog.StandardOutput || (Path.IsPathFullyQualified(value) && !value.EndsWith('/')))
        {
            return value;
        }

        if (Path.IsPathFullyQualified(value))
        {
            string shown = PrintableText.Shorten(value);
            string example = shown == value ? $" (a file in it, e.g. \"{value}audit.jsonl\")" : string.Empty;
            throw new ConfigurationException(locations[path], path, $"expected a file path, found the directory \"{shown}\"{example}");
        }

        throw new ConfigurationException(
            locations[path],
            path,
            $"expected \"stdout\" or an absolute file path (e.g. \"/var/log/egress/audit.jsonl\"), found \"{PrintableText.Shorten(value)}\"");
    }

    // Each entry is parsed here, once; the policy, the digest and the warnings use the result.
    private DestinationEntry[] ReadDestinations(string path, SourceLocation keyLocation) =>
        [.. ReadStringArray(path, keyLocation).Select(entry => DestinationEntry.Parse(entry.Value, entry.Location))];

    // host.internal_networks: addresses and networks written as a destination entry names them (the same parser, so
    // the same strictness: dotted decimal, no host bits), without ports.
    private IPNetwork[] ReadNetworks(string path, SourceLocation keyLocation)
    {
        var networks = new List<IPNetwork>();
        var errors = new List<ConfigurationException>();
        foreach (var (value, location) in ReadStringArray(path, keyLocation))
        {
            if (TryParseNetwork(value, out string? problem) is { } network)
            {
                networks.Add(network);
            }
            else
            {
                errors.Add(new ConfigurationException(location, path, problem!));
            }
        }

        return errors.Count > 0 ? throw ConfigurationException.Combine(errors) : [.. networks.Distinct()];
    }

    private static IPNetwork? TryParseNetwork(string value, out string? problem)
    {
        string shown = PrintableText.Shorten(value);
        int slash = value.LastIndexOf('/');
        IPNetwork? network = null;
        if (slash >= 0 && value.Length > slash + 1 && value.AsSpan(slash + 1).TrimStart('0').IsEmpty)
        {
            // A /0 (the destination parser's own words for it are about opening ranges).
            problem = $"\"{shown}\": that network would make every destination internal";
        }
        else if (DestinationRuleParser.TryParse(value, out DestinationRule? rule) is { } reason)
        {
            problem = $"invalid network \"{shown}\": {PrintableText.Escape(reason)}";
        }
        else if (rule!.Ports is not null || (rule.Network is null && rule.Address is null))
        {
            problem = $"\"{shown}\" is not an IP address or network without a port (e.g. \"2600:1f18:abcd:1200::/56\", \"10.0.0.0/16\")";
        }
        else
        {
            network = rule.Network ?? new IPNetwork(rule.Address!, rule.Address!.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128);
            AddressBlock block = AddressBlock.From(network.Value);
            problem = block.PrefixLength == 96 && AddressValue.IsIPv4(block.First)
                ? $"\"{shown}\": that network (every IPv4 address, IPv4-mapped) would make every IPv4 destination internal"
                : null;
        }

        return problem is null ? network : null;
    }

    // Evervault's EGRESS_PORTS: egress only on these ports; integers or strings of digits ("443"), as its files have both.
    private PortSet ReadPorts(string path, SourceLocation keyLocation)
    {
        TomlParseEvent array = Next();
        SourceLocation arrayLocation = ValueLocation(array, keyLocation);
        if (array.Kind != TomlParseEventKind.StartArray)
        {
            throw new ConfigurationException(arrayLocation, path, $"expected an array of ports, e.g. [443, 8443], found {Describe(array.Kind)}");
        }

        locations[path] = arrayLocation;
        var ports = new List<string>();
        for (TomlParseEvent element = Next(); element.Kind != TomlParseEventKind.EndArray; element = Next())
        {
            SourceLocation location = ValueLocation(element, arrayLocation);
            string port = element.Kind switch
            {
                TomlParseEventKind.Integer => element.GetInt64().ToString(CultureInfo.InvariantCulture),
                TomlParseEventKind.String => Parser.GetString(),
                _ => throw new ConfigurationException(location, path, $"expected a port (an integer), found {Describe(element.Kind)}"),
            };
            string? reason = port.Contains(',', StringComparison.Ordinal) || port.Contains('-', StringComparison.Ordinal)
                ? $"port \"{port}\" is not a number from 1 to 65535 (egress.ports lists single ports; a range or a list goes in a destination entry, such as \"api.example.com:{port}\")"
                : PortSet.TryParse(port, out _);
            if (reason is not null)
            {
                throw new ConfigurationException(location, path, reason);
            }

            ports.Add(port);
        }

        if (ports.Count == 0)
        {
            throw new ConfigurationException(arrayLocation, path, "an empty list would allow no port at all; remove the key to allow every port, or list the ports");
        }

        _ = PortSet.TryParse(string.Join(',', ports), out PortSet? set); // each item was checked above, with its location
        return set!;
    }

    private static readonly string[] EnclaveKeys = ["cid", "config"];

    // [[host.enclaves]] cid = 16 | "any", config = "PATH"; tables of one array that the event stream gives apart (the
    // array reopened after another table) are added to those read before.
    private EnclaveMapping[] ReadEnclaves(string path, SourceLocation keyLocation)
    {
        TomlParseEvent array = Next();
        SourceLocation arrayLocation = ValueLocation(array, keyLocation);
        if (array.Kind != TomlParseEventKind.StartArray)
        {
            throw new ConfigurationException(arrayLocation, path, $"expected an array of tables ([[host.enclaves]] with cid and config), found {Describe(array.Kind)}");
        }

        locations.TryAdd(path, arrayLocation);
        var mappings = new List<EnclaveMapping>(values.TryGetValue(ConfigurationKeys.HostEnclaves, out object? before) ? (EnclaveMapping[])before! : []);
        string directory = Path.GetDirectoryName(sourceName) ?? string.Empty;
        for (TomlParseEvent table = Next(); table.Kind != TomlParseEventKind.EndArray; table = Next())
        {
            SourceLocation tableLocation = ValueLocation(table, arrayLocation);
            if (table.Kind != TomlParseEventKind.StartTable)
            {
                throw new ConfigurationException(tableLocation, path, $"expected a table with cid and config, found {Describe(table.Kind)}");
            }

            (uint? Cid, bool Set)? cid = null;
            string? config = null;
            SourceLocation? configLocation = null;
            SourceLocation? entryLocation = table.Line > 0 ? tableLocation : null; // [[...]] headers have no position
            for (TomlParseEvent current = Next(); current.Kind != TomlParseEventKind.EndTable; current = Next())
            {
                string key = Parser.GetPropertyName();
                SourceLocation location = Here(current);
                entryLocation ??= location;
                TomlParseEvent value = Next();
                SourceLocation valueLocation = ValueLocation(value, location);
                switch (key)
                {
                    case "cid" when value.Kind == TomlParseEventKind.Integer:
                        long number = value.GetInt64();
                        cid = number switch
                        {
                            0 or 2 => throw new ConfigurationException(valueLocation, path + ".cid", $"CID {number} is the {(number == 0 ? "hypervisor" : "host")} (VMADDR_CID_{(number == 0 ? "HYPERVISOR" : "HOST")}), never an enclave; enclaves have CID 4 or above (the CID given to nitro-cli run-enclave --enclave-cid, or the one it printed)"),
                            3 => throw new ConfigurationException(valueLocation, path + ".cid", "CID 3 is the parent instance's own CID on Nitro, never an enclave's; enclaves have CID 4 or above (the CID given to nitro-cli run-enclave --enclave-cid, or the one it printed)"),
                            >= 0 and < VsockAnyCid => ((uint)number, true),
                            _ => throw new ConfigurationException(valueLocation, path + ".cid", $"must be between 4 and {VsockAnyCid - 1} (or 1, VMADDR_CID_LOCAL, for a test on one machine), or \"any\", found {number}"),
                        };
                        break;
                    case "cid" when value.Kind == TomlParseEventKind.String && Parser.GetString() == "any":
                        cid = (null, true);
                        break;
                    case "cid":
                        throw new ConfigurationException(valueLocation, path + ".cid", $"expected the enclave's CID (an integer, e.g. 16) or \"any\", found {(value.Kind == TomlParseEventKind.String ? $"\"{Parser.GetString()}\"" : Describe(value.Kind))}");
                    case "config" when value.Kind == TomlParseEventKind.String && Parser.GetString().Length > 0:
                        config = Parser.GetString();
                        configLocation = valueLocation;
                        config = Path.IsPathRooted(config) ? config : Path.Combine(directory, config);
                        break;
                    case "config":
                        throw new ConfigurationException(valueLocation, path + ".config", $"expected the path of the enclave's enclave.toml, found {(value.Kind == TomlParseEventKind.String ? "an empty string" : Describe(value.Kind))}");
                    default:
                        throw UnknownKey(key, path + "." + key, location, EnclaveKeys);
                }
            }

            SourceLocation at = entryLocation ?? tableLocation;
            if (cid is null || config is null)
            {
                throw new ConfigurationException(at, path, $"each [[host.enclaves]] needs cid (the enclave's CID, or \"any\") and config (its enclave.toml); this one has no {(cid is null ? "cid" : "config")}");
            }

            if (mappings.Find(mapping => mapping.Cid == cid.Value.Cid) is { } duplicate)
            {
                string which = cid.Value.Cid is { } number ? $"CID {number}" : "\"any\"";
                throw new ConfigurationException(at, path, $"{which} is mapped twice (first at {duplicate.Location})");
            }

            mappings.Add(new EnclaveMapping(cid.Value.Cid, config, at, configLocation));
        }

        return [.. mappings];
    }

    /// <summary>VMADDR_CID_ANY: not the CID of a peer.</summary>
    private const long VsockAnyCid = 0xFFFFFFFF;

    // A key whose few spellings each mean an enum value (ConfigurationChoices).
    private Enum ReadChoice(string path, SourceLocation keyLocation, ConfigurationChoices choices)
    {
        string value = ReadString(path, keyLocation);
        return choices.TryRead(value, out Enum? choice)
            ? choice
            : throw new ConfigurationException(locations[path], path, $"{choices.Expected}, found \"{PrintableText.Shorten(value)}\"");
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
            throw new ConfigurationException(Here(value), path, OutOfRange(min, max, number.ToString(CultureInfo.InvariantCulture)));
        }

        return number;
    }

    /// <summary>The problem of an integer key's value outside its range (<paramref name="found"/> as written).</summary>
    internal static string OutOfRange(long min, long max, string found) =>
        string.Create(CultureInfo.InvariantCulture, $"must be between {min} and {max}, found {found}");

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
            : throw new ConfigurationException(locations[path], path, $"invalid listen address \"{PrintableText.Shorten(text)}\": {problem}");
    }

    private IPEndPoint[] ReadEndPoints(string path, SourceLocation keyLocation, bool listen)
    {
        List<(string Value, SourceLocation Location)> entries = ReadStringArray(path, keyLocation);
        if (listen && entries.Count == 0)
        {
            throw new ConfigurationException(locations[path], path, "must list at least one address");
        }

        // Every invalid element is said, a line each, as for destinations (a new user's trial: only the first was).
        var endPoints = new IPEndPoint[entries.Count];
        var errors = new List<ConfigurationException>();
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
                errors.Add(new ConfigurationException(location, path, $"invalid {what} \"{PrintableText.Shorten(entry)}\": {problem}"));
            }
            else if (EndPointText.IsListedBefore(endPoints, i, endPoint!))
            {
                errors.Add(new ConfigurationException(location, path, EndPointText.ListedTwice(PrintableText.Shorten(entry))));
            }
            else
            {
                endPoints[i] = endPoint!;
            }
        }

        return errors.Count > 0 ? throw ConfigurationException.Combine(errors) : endPoints;
    }

    /// <summary>
    /// Skips the value of Evervault's top-level key or table <paramref name="table"/> (its contents are Evervault's),
    /// except that a key of <c>[egress]</c>'s own in one of its tables is an error: in TOML a key belongs to the last
    /// table header above it, so a <c>ports = [443]</c> written below <c>[attestation]</c> is attestation's, and the
    /// destinations would be allowed on every port without a word.
    /// </summary>
    private void SkipEvervaultValue(string table)
    {
        TomlParseEvent value = Next();
        if (value.Kind != TomlParseEventKind.StartTable)
        {
            SkipRestOf(value);
            return;
        }

        for (TomlParseEvent current = Next(); current.Kind != TomlParseEventKind.EndTable; current = Next())
        {
            string key = Parser.GetPropertyName();
            if (EgressSectionOnlyKeys.Contains(key))
            {
                throw new ConfigurationException(
                    Here(current), table + "." + key,
                    $"'{key}' is a key of [egress], but here it is in Evervault's [{table}] table, which Egress does not read (a key belongs to the last [table] header above it): move it under [egress]");
            }

            SkipValue();
        }
    }

    /// <summary>The keys of <c>[egress]</c> no table of Evervault's has: found in one of them, they were meant for <c>[egress]</c>.</summary>
    private static readonly string[] EgressSectionOnlyKeys = ["destinations", "ports", "tls_server_name"];

    /// <summary>Skips the rest of a value whose first event, <paramref name="first"/>, was already read.</summary>
    private void SkipRestOf(TomlParseEvent first)
    {
        int depth = first.Kind is TomlParseEventKind.StartTable or TomlParseEventKind.StartArray ? 1 : 0;
        while (depth > 0)
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
    }

    private void SkipValue() => SkipRestOf(Next());

    private void ValidateTimeoutOrder()
    {
        long statusTimeoutMs = Get<long>(ConfigurationKeys.TunnelStatusTimeout);
        long connectTimeoutMs = Get<long>(ConfigurationKeys.HostConnectTimeout);
        if (statusTimeoutMs > connectTimeoutMs)
        {
            return;
        }

        // Point at whichever of the two the file sets, preferring the status timeout (defaults satisfy the rule).
        string key = locations.ContainsKey(ConfigurationKeys.TunnelStatusTimeout.Path) ? ConfigurationKeys.TunnelStatusTimeout.Path : ConfigurationKeys.HostConnectTimeout.Path;
        throw new ConfigurationException(
            locations[key],
            key,
            $"tunnel.status_timeout_ms ({statusTimeoutMs}) must be greater than host.connect_timeout_ms ({connectTimeoutMs}), or the enclave gives up before the host reports");
    }

    // The proxy (TCP) and the DNS forwarder (UDP and TCP) each bind their addresses: one shared would fail only at
    // start, as "cannot listen for DNS ... Address already in use", which names neither key. Points at the dns_listen
    // entry when the file sets that key, else at the proxy_listen one.
    private void ValidateListenAddressesApart()
    {
        IReadOnlyList<IPEndPoint> proxy = EndPoints(ConfigurationKeys.EnclaveProxyListen);
        IReadOnlyList<IPEndPoint> dns = EndPoints(ConfigurationKeys.EnclaveDnsListen);
        for (int d = 0; d < dns.Count; d++)
        {
            for (int p = 0; p < proxy.Count; p++)
            {
                if (proxy[p].Port != dns[d].Port || proxy[p].AddressFamily != dns[d].AddressFamily
                    || !(proxy[p].Address.Equals(dns[d].Address) || EndPointText.IsUnspecified(proxy[p].Address) || EndPointText.IsUnspecified(dns[d].Address)))
                {
                    continue;
                }

                (string key, int index) = locations.ContainsKey($"{ConfigurationKeys.EnclaveDnsListen.Path}[{d}]")
                    ? (ConfigurationKeys.EnclaveDnsListen.Path, d)
                    : (ConfigurationKeys.EnclaveProxyListen.Path, p);
                throw new ConfigurationException(
                    locations[$"{key}[{index}]"],
                    key,
                    $"enclave.proxy_listen {proxy[p]} and enclave.dns_listen {dns[d]} overlap: the proxy and the DNS forwarder (which also listens on TCP) each need addresses of their own");
            }
        }
    }

    private T Get<T>(ConfigurationKey key) => (T)(values.TryGetValue(key, out object? value) ? value : key.Default)!;

    private TimeSpan Duration(ConfigurationKey key) => key.ToDuration(Get<long>(key));

    private int Count(ConfigurationKey key) => checked((int)Get<long>(key));

    private IReadOnlyList<IPEndPoint> EndPoints(ConfigurationKey key) =>
        Array.AsReadOnly(values.TryGetValue(key, out object? value) ? (IPEndPoint[])value! : key.DefaultEndPoints);

    private EgressConfiguration Build()
    {
        long idleTimeoutSeconds = Get<long>(ConfigurationKeys.RelayIdleTimeout);
        long halfClosedSeconds = Get<long>(ConfigurationKeys.RelayHalfClosedTimeout);
        return new EgressConfiguration(
            sourceName,
            new EgressSection(Get<bool>(ConfigurationKeys.EgressEnabled), Array.AsReadOnly(values.TryGetValue(ConfigurationKeys.EgressDestinations, out object? entries) ? (DestinationEntry[])entries! : []), values.TryGetValue(ConfigurationKeys.EgressPorts, out object? ports) ? (PortSet?)ports : null, Get<EgressMode>(ConfigurationKeys.EgressModeKey), Get<Tls.TlsServerNameMode>(ConfigurationKeys.EgressTlsServerName)),
            new TunnelSection(Get<string>(ConfigurationKeys.TunnelEnclaveEndpoint), Get<string>(ConfigurationKeys.TunnelHostEndpoint), Duration(ConfigurationKeys.TunnelStatusTimeout)),
            new EnclaveSection(EndPoints(ConfigurationKeys.EnclaveProxyListen), EndPoints(ConfigurationKeys.EnclaveDnsListen), Duration(ConfigurationKeys.EnclaveDnsQueryTimeout), Get<NetfilterBackend>(ConfigurationKeys.EnclaveNetfilter), Count(ConfigurationKeys.EnclaveMaxConnections), Count(ConfigurationKeys.EnclaveFailoverAttempts), Get<string?>(ConfigurationKeys.EnclaveAuditLog), Count(ConfigurationKeys.EnclaveMaxPendingConnections), Get<Denials.DenialDetail>(ConfigurationKeys.EnclaveReportDenials)),
            new HostSection(
                Duration(ConfigurationKeys.HostConnectTimeout),
                Duration(ConfigurationKeys.HostHeaderTimeout),
                EndPoints(ConfigurationKeys.HostDnsUpstreams),
                Duration(ConfigurationKeys.HostDnsTimeout),
                Get<IPEndPoint?>(ConfigurationKeys.HostMetricsListen),
                Count(ConfigurationKeys.HostMaxStreams),
                Duration(ConfigurationKeys.HostKeepAliveIdle),
                Duration(ConfigurationKeys.HostKeepAliveInterval),
                Count(ConfigurationKeys.HostKeepAliveProbes),
                Array.AsReadOnly(values.TryGetValue(ConfigurationKeys.HostEnclaves, out object? enclaves) ? (EnclaveMapping[])enclaves! : []),
                Get<string?>(ConfigurationKeys.HostAuditLog),
                Array.AsReadOnly(values.TryGetValue(ConfigurationKeys.HostInternalNetworks, out object? internalNetworks) ? (IPNetwork[])internalNetworks! : [])),
            new DnsSection(Duration(ConfigurationKeys.DnsTtlFloor), Duration(ConfigurationKeys.DnsGrace), Count(ConfigurationKeys.DnsCacheMaxEntries)),
            new RelaySection(
                idleTimeoutSeconds == 0 ? Timeout.InfiniteTimeSpan : ConfigurationKeys.RelayIdleTimeout.ToDuration(idleTimeoutSeconds),
                halfClosedSeconds == 0 ? Timeout.InfiniteTimeSpan : ConfigurationKeys.RelayHalfClosedTimeout.ToDuration(halfClosedSeconds),
                Duration(ConfigurationKeys.RelayShutdownDrain),
                Get<bool>(ConfigurationKeys.RelaySplice)),
            locations);
    }

    /// <summary>Whether the key at <paramref name="location"/> is the first of a <c>[table]</c> header's: only
    /// whitespace and <c>[</c> (and a quote) before it on its line.</summary>
    private bool IsTableHeader(SourceLocation location)
    {
        int start = 0;
        for (int line = 1; line < location.Line && start >= 0; line++)
        {
            start = text.IndexOf('\n', start) is var end and >= 0 ? end + 1 : -1;
        }

        if (start < 0 || location.Column < 1 || start + location.Column - 1 > text.Length)
        {
            return false;
        }

        ReadOnlySpan<char> before = text.AsSpan(start, location.Column - 1).Trim().TrimEnd("\"'");
        return before.Length > 0 && before[^1] == '[' && before.TrimEnd('[').Trim().IsEmpty;
    }

    private static ConfigurationException UnknownTable(string name, SourceLocation location)
    {
        // Egress's sections and Evervault's top-level names ([signing], [scaling]: a review found their typos lost the
        // suggestion the key path gave).
        string? suggestion = TopLevelKeys.FirstOrDefault(candidate => EditDistance(name.ToLowerInvariant(), candidate) <= 2);
        return new ConfigurationException(location, name, suggestion is not null
            ? $"unknown table; did you mean [{suggestion}]?"
            : $"unknown table; Egress reads {string.Join(", ", ConfigurationKeys.Sections.Select(section => $"[{section}]"))} (and ignores Evervault's)");
    }

    private ConfigurationException UnknownKey(string key, string path, SourceLocation keyLocation, string[] known)
    {
        // A near miss (TOML keys are case-sensitive: ENABLED is one too), or a duration key without its unit or with
        // another unit (status_timeout, idle_timeout_ms).
        string? suggestion = known.FirstOrDefault(candidate =>
            EditDistance(key.ToLowerInvariant(), candidate) <= 2 || WithoutUnit(key).SequenceEqual(WithoutUnit(candidate)));
        if (suggestion is not null)
        {
            return new ConfigurationException(keyLocation, path, $"unknown key; did you mean '{suggestion}'?");
        }

        // A key of another section ([host] proxy_listen): where it belongs.
        string[] elsewhere = [.. ConfigurationKeys.All.Where(other => other.Name == key && other.Path != path).Select(other => $"[{other.Section}]")];
        if (elsewhere.Length > 0)
        {
            return new ConfigurationException(keyLocation, path, $"unknown key here; '{key}' is a key of {string.Join(" and ", elsewhere)}");
        }

        // A key named by one word of a real one, here or in another section (a trial: [dns] upstreams, [tunnel] endpoint,
        // [enclave] proxy_port got a bare "unknown key"): the keys it may mean, by their full path.
        string stem = key.EndsWith("_port", StringComparison.Ordinal) ? key[..^"_port".Length] : key;
        string[] related = [.. ConfigurationKeys.All
            .Where(other => other.Name.EndsWith("_" + key, StringComparison.Ordinal) || other.Name.StartsWith(stem + "_", StringComparison.Ordinal))
            .Select(other => $"'{other.Path}'")
            .Distinct()
            .Take(3)];
        return new ConfigurationException(keyLocation, path, related.Length == 0
            ? "unknown key"
            : $"unknown key; did you mean {string.Join(" or ", related)}?");
    }

    private static ReadOnlySpan<char> WithoutUnit(string key) =>
        key.EndsWith("_ms", StringComparison.Ordinal) ? key.AsSpan(0, key.Length - 3)
        : key.EndsWith("_seconds", StringComparison.Ordinal) ? key.AsSpan(0, key.Length - 8)
        : key;

    /// <summary>The Levenshtein distance of <paramref name="a"/> and <paramref name="b"/> (also the hosts' command lines suggest options by it).</summary>
    internal static int EditDistance(string a, string b)
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
