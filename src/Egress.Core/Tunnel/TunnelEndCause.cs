namespace Egress.Tunnel;

/// <summary>
/// How one direction of a version 2 TCP stream ended: the cause byte of its END frame (docs/tunnel-protocol.md).
/// Only <see cref="Fin"/> is a clean end; every other value, including codes not defined here, is an abort.
/// </summary>
internal enum TunnelEndCause : byte
{
    /// <summary>The sender's socket reached end of stream (FIN): a clean half-close; the other direction goes on.</summary>
    Fin = 0,

    /// <summary>The sender's socket was reset (ECONNRESET: RST from the destination or the application).</summary>
    Reset = 1,

    /// <summary>Another error on the sender's side: a connect or relay error (e.g. ETIMEDOUT after keepalive, EPIPE).</summary>
    Error = 2,

    /// <summary>The sender's relay moved no byte for its idle timeout.</summary>
    IdleTimeout = 3,

    /// <summary>The sender is stopping (its drain deadline passed, or it was told to stop).</summary>
    Stopping = 4,

    /// <summary>The sender received frames it could not read (unknown type, bad length).</summary>
    ProtocolError = 5,

    /// <summary>The sender's policy refused the connection's first bytes (a TLS ClientHello whose server name is not
    /// allowed for the destination, <c>egress.tls_server_name</c>): none of them was forwarded.</summary>
    Refused = 6,
}
