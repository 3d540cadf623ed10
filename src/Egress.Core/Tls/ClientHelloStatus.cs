namespace Egress.Tls;

/// <summary>What <see cref="ClientHelloParser.Parse"/> found in a connection's first client bytes.</summary>
internal enum ClientHelloStatus
{
    /// <summary>The bytes so far are a valid prefix of a TLS ClientHello: read more.</summary>
    NeedMore,

    /// <summary>The first byte is not a TLS handshake record (content type 22): not TLS, e.g. a plain-text protocol.</summary>
    NotTls,

    /// <summary>A complete ClientHello; see <see cref="ClientHello"/>.</summary>
    ClientHello,

    /// <summary>A TLS handshake record that is not a well-formed ClientHello (a length out of bounds, another handshake
    /// type, a record of another type before the ClientHello ends, a duplicate extension, an invalid host_name).</summary>
    Malformed,

    /// <summary>The ClientHello is longer than <see cref="ClientHelloParser.MaxHandshakeLength"/>, or its records take more
    /// than <see cref="ClientHelloParser.MaxBytes"/>.</summary>
    TooLarge,
}
