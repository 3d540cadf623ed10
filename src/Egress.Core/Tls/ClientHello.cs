namespace Egress.Tls;

/// <summary>What the verification needs from a complete ClientHello.</summary>
/// <param name="ServerName">The RFC 6066 host_name of the server_name extension, lower case (ASCII); null when the
/// ClientHello has no server_name extension. With ECH this is the outer ClientHello's name (the public name).</param>
/// <param name="HasEncryptedClientHello">Whether the encrypted_client_hello extension (0xfe0d) is present: the name the
/// client means is then encrypted, and <paramref name="ServerName"/> is only the client-facing server's public name.
/// A GREASE ECH extension looks the same on the wire, by design.</param>
internal readonly record struct ClientHello(string? ServerName, bool HasEncryptedClientHello);
