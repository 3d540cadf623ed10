namespace Egress.Configuration;

/// <summary>
/// The settings of egress-enclave and egress-host, read from an <c>enclave.toml</c> (Evervault's file, extended with
/// Egress's own sections). Immutable. Every key is optional; see <c>docs/configuration.md</c> for the defaults.
/// </summary>
public sealed class EgressConfiguration
{
    private readonly IReadOnlyDictionary<string, SourceLocation> locations;

    internal EgressConfiguration(
        string sourceName,
        EgressSection egress,
        TunnelSection tunnel,
        EnclaveSection enclave,
        HostSection host,
        DnsSection dns,
        RelaySection relay,
        IReadOnlyDictionary<string, SourceLocation> locations)
    {
        SourceName = sourceName;
        Egress = egress;
        Tunnel = tunnel;
        Enclave = enclave;
        Host = host;
        Dns = dns;
        Relay = relay;
        this.locations = locations;
    }

    /// <summary>Gets the configuration with every key at its default (egress disabled).</summary>
    public static EgressConfiguration Default { get; } = new ConfigurationReader(string.Empty, "(defaults)").Read();

    /// <summary>Gets the name of the source the configuration was read from (<c>(defaults)</c> for <see cref="Default"/>).</summary>
    public string SourceName { get; }

    /// <summary>Gets the <c>[egress]</c> section.</summary>
    public EgressSection Egress { get; }

    /// <summary>Gets the <c>[tunnel]</c> section.</summary>
    public TunnelSection Tunnel { get; }

    /// <summary>Gets the <c>[enclave]</c> section.</summary>
    public EnclaveSection Enclave { get; }

    /// <summary>Gets the <c>[host]</c> section.</summary>
    public HostSection Host { get; }

    /// <summary>Gets the <c>[dns]</c> section.</summary>
    public DnsSection Dns { get; }

    /// <summary>Gets the <c>[relay]</c> section.</summary>
    public RelaySection Relay { get; }

    /// <summary>Reads and checks a configuration file.</summary>
    /// <param name="path">The file's path; it also names the source in error messages.</param>
    /// <returns>The configuration.</returns>
    /// <exception cref="ConfigurationException">The file is not UTF-8 text, is not valid TOML, has an unknown key, a value
    /// of the wrong type or out of its range. The destination entries and the tunnel endpoints are checked when they are used
    /// (<see cref="ConfiguredComponents.CreatePolicy"/>, <see cref="ConfiguredComponents.GetTunnelEndpoint"/>), with the
    /// same <c>file:line:col</c> errors.</exception>
    /// <exception cref="IOException">The file cannot be read, <paramref name="path"/> is a directory, or the file is
    /// larger than 64 MiB.</exception>
    /// <exception cref="UnauthorizedAccessException">The file's permissions do not let this process read it.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty.</exception>
    public static EgressConfiguration Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
        {
            // File.ReadAllText would say "Access to the path is denied", which sends users to the permissions.
            throw new IOException($"{path} is a directory, not a configuration file (enclave.toml)");
        }

        // Read up to the bound, not to the end: a path like /dev/zero (or a FIFO that never ends) would otherwise grow
        // the process without end before any error.
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 1, FileOptions.SequentialScan);
        using var text = new MemoryStream();
        byte[] chunk = new byte[64 * 1024];
        for (int read; (read = file.Read(chunk)) > 0;)
        {
            text.Write(chunk, 0, read);
            if (text.Length > MaxFileBytes)
            {
                throw new IOException($"{path} is larger than {MaxFileBytes / (1024 * 1024)} MiB; an enclave.toml is a few KiB (100,000 destinations are about 3 MiB)");
            }
        }

        // TOML is UTF-8: a byte that is not is an error located at it (a StreamReader would read it as U+FFFD, or read
        // a file with a UTF-16 byte order mark as UTF-16).
        return Parse(ConfigurationText.Decode(text.GetBuffer().AsSpan(0, (int)text.Length), path), path);
    }

    /// <summary>The largest configuration file <see cref="Load"/> reads: 64 MiB.</summary>
    internal const int MaxFileBytes = 64 * 1024 * 1024;

    /// <summary>Reads and checks configuration text.</summary>
    /// <param name="text">The TOML text.</param>
    /// <param name="sourceName">The name error messages give the source (usually its file path).</param>
    /// <returns>The configuration.</returns>
    /// <exception cref="ConfigurationException">The text is not valid TOML, has an unknown key, a value of the wrong type
    /// or out of its range. The destination entries and the tunnel endpoints are checked when they are used
    /// (<see cref="ConfiguredComponents.CreatePolicy"/>, <see cref="ConfiguredComponents.GetTunnelEndpoint"/>), with the
    /// same <c>file:line:col</c> errors.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> or <paramref name="sourceName"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="sourceName"/> is empty.</exception>
    public static EgressConfiguration Parse(string text, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentException.ThrowIfNullOrEmpty(sourceName);
        return new ConfigurationReader(text, sourceName).Read();
    }

    /// <summary>Gets where a value was written in the source.</summary>
    /// <param name="keyPath">The dotted key path, e.g. <c>egress.destinations</c> or <c>tunnel.enclave_endpoint</c>.</param>
    /// <param name="arrayIndex">The index of an array element, or -1 for the value itself.</param>
    /// <returns>The location of the value (of the element when <paramref name="arrayIndex"/> is given), or null when the source does not set it.</returns>
    internal SourceLocation? GetLocation(string keyPath, int arrayIndex = -1)
    {
        ArgumentNullException.ThrowIfNull(keyPath);
        string key = arrayIndex < 0 ? keyPath : $"{keyPath}[{arrayIndex}]";
        return locations.TryGetValue(key, out SourceLocation location) ? location : null;
    }

    /// <summary>
    /// Creates an error located at a value, for checks made outside this module (destination entries, tunnel endpoints):
    /// <c>enclave.toml:4:17: error: invalid destination "a.*.com": ... (key 'egress.destinations')</c>.
    /// </summary>
    /// <param name="keyPath">The dotted key path of the value.</param>
    /// <param name="problem">What is wrong with it.</param>
    /// <param name="arrayIndex">The index of the offending array element, or -1 for the value itself.</param>
    /// <returns>The error, located at the element, else at the value, else (a default value) at the source without a line.</returns>
    internal ConfigurationException CreateException(string keyPath, string problem, int arrayIndex = -1)
    {
        SourceLocation location = GetLocation(keyPath, arrayIndex)
            ?? GetLocation(keyPath)
            ?? new SourceLocation(SourceName, 0, 0);
        return new ConfigurationException(location, keyPath, problem);
    }
}
