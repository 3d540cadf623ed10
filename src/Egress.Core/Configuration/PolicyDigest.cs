using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Egress.Policy;

namespace Egress.Configuration;

/// <summary>
/// A fingerprint of the settings that decide allow and deny on both sides, so that an enclave and a parent that read
/// different <c>enclave.toml</c> files show it: both hosts log it at start (<c>policy sha256:1a2b3c4d5e6f: ...</c>) and
/// <c>egress-enclave check</c> prints it. It is the SHA-256 of a canonical text of <c>egress.enabled</c>, the
/// <c>egress.destinations</c> entries in canonical form (lower case, no trailing dot, standard address and network
/// notation), without duplicates and sorted, <c>egress.tls_server_name</c>, and the three <c>[dns]</c> keys, which decide how long a learnt address
/// stays allowed, and <c>egress.mode</c> when it is <c>report</c> (an enforcing file has no such line;
/// an enclave that reports and a parent that enforces, or the reverse, differ). Comments, whitespace, the order of keys and entries, and every per-side setting (tunnel endpoints,
/// listen addresses, timeouts, upstreams, the relay) do not count. The built-in internal ranges belong to the program
/// rather than the file: the version line names that. <c>host.internal_networks</c> does not count either: it is the
/// parent's, as its own addresses are (a VPC's blocks, set on the parent's copy of the file without rebuilding an
/// attested enclave image), and it only ever denies more.
/// </summary>
public sealed class PolicyDigest
{
    /// <summary>The first line of the canonical text; a change to what is hashed changes it.</summary>
    internal const string FormatLine = "egress-policy v2";

    private const int ShortLength = 12;

    private PolicyDigest(string hash, bool egressEnabled, int destinationCount, EgressMode mode)
    {
        Mode = mode;
        Hash = hash;
        EgressEnabled = egressEnabled;
        DestinationCount = destinationCount;
    }

    /// <summary>Gets the SHA-256 of the canonical text: 64 lower-case hexadecimal digits.</summary>
    public string Hash { get; }

    /// <summary>Gets whether egress is enabled (<c>egress.enabled</c>).</summary>
    public bool EgressEnabled { get; }

    /// <summary>Gets whether denials are enforced or only reported (<c>egress.mode</c>).</summary>
    public EgressMode Mode { get; }

    /// <summary>Gets how many distinct destination entries there are, counted in canonical form.</summary>
    public int DestinationCount { get; }

    /// <summary>The short form hosts log: <c>sha256:</c> and the first 12 digits of <see cref="Hash"/>.</summary>
    /// <returns>E.g. <c>sha256:1a2b3c4d5e6f</c>.</returns>
    public override string ToString() => "sha256:" + Hash[..ShortLength];

    /// <summary>Computes the digest of <paramref name="configuration"/> (the one function both hosts use).</summary>
    /// <exception cref="ConfigurationException">A destination entry is invalid; the message gives its location.</exception>
    internal static PolicyDigest Compute(EgressConfiguration configuration)
    {
        string text = CanonicalText(configuration, out int destinationCount);
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
        return new PolicyDigest(hash, configuration.Egress.Enabled, destinationCount, configuration.Egress.Mode);
    }

    /// <summary>
    /// The text that is hashed, one <c>key = value</c> line each, e.g.
    /// <c>egress-policy v1\negress.enabled = true\negress.destination = *.example.com\n...\ndns.cache_max_entries = 65536\n</c>.
    /// </summary>
    /// <exception cref="ConfigurationException">A destination entry is invalid; the message gives its location.</exception>
    internal static string CanonicalText(EgressConfiguration configuration, out int destinationCount)
    {
        var destinations = new SortedSet<string>(StringComparer.Ordinal);
        foreach (DestinationRule rule in configuration.Egress.Rules())
        {
            destinations.Add(rule.Text); // with egress.ports applied: the digest covers what is enforced
        }

        destinationCount = destinations.Count;
        var text = new StringBuilder();
        text.Append(FormatLine).Append('\n');
        text.Append("egress.enabled = ").Append(configuration.Egress.Enabled ? "true" : "false").Append('\n');
        if (configuration.Egress.Mode == EgressMode.Report)
        {
            text.Append("egress.mode = report\n");
        }

        foreach (string destination in destinations)
        {
            text.Append("egress.destination = ").Append(destination).Append('\n');
        }

        text.Append("egress.tls_server_name = ").Append(ConfigurationChoices.TlsServerName.TextOf(configuration.Egress.TlsServerName)).Append('\n');
        DnsSection dns = configuration.Dns;
        text.Append(CultureInfo.InvariantCulture, $"dns.ttl_floor_seconds = {(long)dns.TtlFloor.TotalSeconds}\n");
        text.Append(CultureInfo.InvariantCulture, $"dns.grace_seconds = {(long)dns.Grace.TotalSeconds}\n");
        text.Append(CultureInfo.InvariantCulture, $"dns.cache_max_entries = {dns.CacheMaxEntries}\n");
        return text.ToString();
    }
}
