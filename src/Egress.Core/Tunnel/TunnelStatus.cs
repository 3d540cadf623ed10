namespace Egress.Tunnel;

/// <summary>The parent's answer to a tunnel request. Values are the status byte on the wire.</summary>
public enum TunnelStatus : byte
{
    /// <summary>The destination was dialed (or DNS forwarding is ready); the stream now carries the payload.</summary>
    Ok = 0,

    /// <summary>The parent's policy does not allow the destination.</summary>
    DeniedByPolicy = 1,

    /// <summary>The destination actively refused the connection.</summary>
    ConnectionRefused = 2,

    /// <summary>No route to the destination host or network.</summary>
    Unreachable = 3,

    /// <summary>Connecting to the destination timed out.</summary>
    TimedOut = 4,

    /// <summary>The request header was malformed.</summary>
    BadRequest = 5,

    /// <summary>The request used a protocol version the parent does not speak.</summary>
    UnsupportedVersion = 6,

    /// <summary>The request kind is unknown to the parent.</summary>
    UnsupportedKind = 7,

    /// <summary>Any other failure.</summary>
    Failure = 8,
}
