namespace Egress.Tls;

/// <summary>
/// Whether a connection allowed through a DNS-learned address must name, in its TLS ClientHello's server_name, one of
/// the names that address was learned from (<c>egress.tls_server_name</c>). Connections allowed by an address or network
/// entry, or by <c>*</c>, are not checked; neither are connections whose first byte is not a TLS handshake record
/// (plain-text protocols pass untouched).
/// </summary>
public enum TlsServerNameMode
{
    /// <summary>A ClientHello must carry a server name that an entry allows and that the address was learned from; one
    /// without a server name, with encrypted_client_hello, malformed, or over 16 KiB is refused (<c>"require"</c>).</summary>
    Require,

    /// <summary>As <see cref="Require"/>, except that a ClientHello without a server name passes (<c>"if-present"</c>).</summary>
    IfPresent,

    /// <summary>No check: the first client bytes are not read before they are relayed (<c>"off"</c>).</summary>
    Off,
}
