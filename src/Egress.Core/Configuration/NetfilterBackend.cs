namespace Egress.Configuration;

/// <summary>
/// Which netfilter backend <c>egress-enclave rules</c> installs its iptables rules with (<c>enclave.netfilter</c>).
/// Debian's plain <c>iptables</c> uses nf_tables, which the Nitro enclave kernel does not have.
/// </summary>
public enum NetfilterBackend
{
    /// <summary>Probe: nf_tables (<c>iptables-nft</c>) when it works, else the legacy ip_tables interface (<c>iptables-legacy</c>).</summary>
    Auto,

    /// <summary>nf_tables, through <c>iptables-nft</c> and <c>ip6tables-nft</c>.</summary>
    Nft,

    /// <summary>The legacy ip_tables interface, through <c>iptables-legacy</c> and <c>ip6tables-legacy</c>.</summary>
    Legacy,
}
