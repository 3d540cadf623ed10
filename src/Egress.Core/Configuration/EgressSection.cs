namespace Egress.Configuration;

/// <summary>The <c>[egress]</c> section, shared with Evervault's <c>enclave.toml</c>.</summary>
public sealed class EgressSection
{
    internal EgressSection(bool enabled, IReadOnlyList<DestinationEntry> entries)
    {
        Enabled = enabled;
        Entries = entries;
        Destinations = Array.AsReadOnly(entries.Select(entry => entry.Text).ToArray());
    }

    /// <summary>Gets whether outbound connections are allowed at all (<c>egress.enabled</c>, default false).</summary>
    public bool Enabled { get; }

    /// <summary>
    /// Gets the allowlist entries exactly as written (<c>egress.destinations</c>, default empty): host names,
    /// <c>*.</c> wildcards, addresses and CIDR ranges. They are not validated here; report a bad entry with
    /// <see cref="EgressConfiguration.CreateException"/> and its index. An empty list allows nothing.
    /// </summary>
    public IReadOnlyList<string> Destinations { get; }

    /// <summary>Gets the entries of <see cref="Destinations"/> as parsed when read, each with its location.</summary>
    internal IReadOnlyList<DestinationEntry> Entries { get; }
}
