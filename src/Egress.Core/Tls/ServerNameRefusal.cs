namespace Egress.Tls;

/// <summary>Why a connection's first bytes were refused by the server-name check (<see cref="None"/>: they were not).</summary>
internal enum ServerNameRefusal
{
    /// <summary>Not refused: not TLS, or a ClientHello whose server name passed.</summary>
    None,

    /// <summary>The ClientHello has no server_name extension (only under <see cref="TlsServerNameMode.Require"/>).</summary>
    NoServerName,

    /// <summary>The server name is not one of the names the destination address was learned from.</summary>
    NotLearned,

    /// <summary>No entry allows the server name.</summary>
    NotAllowed,

    /// <summary>The ClientHello carries encrypted_client_hello: the name the client means cannot be read.</summary>
    EncryptedClientHello,

    /// <summary>The bytes start like a TLS record but are not a well-formed ClientHello (an alert record before it, say).</summary>
    Malformed,

    /// <summary>The ClientHello is larger than the parser holds (<see cref="ClientHelloParser.MaxHandshakeLength"/>).</summary>
    TooLarge,

    /// <summary>The client ended its stream in the middle of a ClientHello.</summary>
    Truncated,

    /// <summary>The client sent the start of a ClientHello and not the rest within
    /// <see cref="ServerNameGate.ClientHelloTimeout"/>: a client that stalls there would hold the destination connection
    /// the parent already opened for as long as the relay's idle timeout.</summary>
    TimedOut,
}
