using Egress.Policy;
using Egress.Tls;

namespace Egress.Configuration;

/// <summary>The <c>[egress]</c> section, shared with Evervault's <c>enclave.toml</c>.</summary>
public sealed class EgressSection
{
    internal EgressSection(bool enabled, IReadOnlyList<DestinationEntry> entries, PortSet? ports = null, EgressMode mode = EgressMode.Enforce, TlsServerNameMode tlsServerName = TlsServerNameMode.Require)
    {
        Mode = mode;
        TlsServerName = tlsServerName;
        Ports = ports;
        Enabled = enabled;
        Entries = entries;
        Destinations = Array.AsReadOnly(entries.Select(entry => entry.Text).ToArray());
    }

    /// <summary>Gets whether outbound connections are allowed at all (<c>egress.enabled</c>, default false).</summary>
    public bool Enabled { get; }

    /// <summary>Gets whether denials are enforced or only reported (<c>egress.mode</c>: <c>"enforce"</c>, the default,
    /// or <c>"report"</c>; see <see cref="EgressMode"/> for what report mode does not relax).</summary>
    public EgressMode Mode { get; }

    /// <summary>
    /// Gets the allowlist entries exactly as written (<c>egress.destinations</c>, default empty): host names,
    /// <c>*.</c> wildcards, addresses and CIDR ranges, each with its own <c>:PORTS</c> if written so. An empty list
    /// allows nothing. They are not the policy: Evervault's <c>egress.ports</c> (the ports of every entry written
    /// without its own) is not in these strings, so a policy built from them with
    /// <see cref="EgressPolicy.Create(bool, IEnumerable{string}, AllowlistCache)"/> allows every port where the file
    /// allows a few. Build the file's policy with <see cref="ConfiguredComponents.CreatePolicy"/>, which applies it
    /// (and <see cref="Mode"/> and <see cref="TlsServerName"/>), and whose <see cref="ConfigurationException"/> names a bad
    /// entry's <c>file:line:col</c>.
    /// </summary>
    public IReadOnlyList<string> Destinations { get; }

    /// <summary>Gets the TLS server-name check of connections to DNS-learned addresses (<c>egress.tls_server_name</c>,
    /// default <see cref="TlsServerNameMode.Require"/>).</summary>
    public TlsServerNameMode TlsServerName { get; }

    /// <summary>Gets the entries of <see cref="Destinations"/> as parsed when read, each with its location.</summary>
    internal IReadOnlyList<DestinationEntry> Entries { get; }

    /// <summary>Gets Evervault's <c>egress.ports</c>: the ports of every entry written without <c>:PORTS</c>; null (the
    /// key absent): every port.</summary>
    internal PortSet? Ports { get; }

    /// <summary>The rules the policy enforces: each entry, with <see cref="Ports"/> when it names no ports itself.</summary>
    /// <exception cref="ConfigurationException">An entry is invalid; the message gives its location, and a line for each
    /// other invalid entry (a library-consumer trial fixed one at a time).</exception>
    internal IEnumerable<DestinationRule> Rules()
    {
        ConfigurationException[] invalid = [.. Entries.Where(entry => entry.Rule is null).Select(entry => entry.ToException())];
        if (invalid.Length > 0)
        {
            throw ConfigurationException.Combine(invalid);
        }

        return Entries.Select(entry => entry.GetRule()).Select(rule => Ports is not null && rule.Ports is null ? rule.WithPorts(Ports) : rule);
    }
}
