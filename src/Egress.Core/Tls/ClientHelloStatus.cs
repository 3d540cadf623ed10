namespace Egress.Tls;

/// <summary>What <see cref="ClientHelloParser.Parse(ReadOnlySpan{byte}, out ClientHello)"/> found in a connection's first client bytes.</summary>
internal enum ClientHelloStatus
{
    /// <summary>The bytes so far are a valid prefix of a TLS ClientHello: read more.</summary>
    NeedMore,

    /// <summary>The first bytes are not a TLS record (content types 20 to 25 followed by TLS's major version 3, an alert of 2 bytes with a version byte below 0x10, or an SSL 2.0-format
    /// ClientHello): not TLS, e.g. a plain-text protocol.</summary>
    NotTls,

    /// <summary>A complete ClientHello; see <see cref="ClientHello"/>.</summary>
    ClientHello,

    /// <summary>TLS records that are not a well-formed ClientHello (a record of another type first, such as an alert, or
    /// before the ClientHello ends, a length out of bounds, another handshake type, a duplicate extension, an invalid
    /// host_name).</summary>
    Malformed,

    /// <summary>The ClientHello is longer than <see cref="ClientHelloParser.MaxHandshakeLength"/>, or its records take more
    /// than <see cref="ClientHelloParser.MaxBytes"/>.</summary>
    TooLarge,
}
