namespace Egress.Tunnel;

/// <summary>The outcome of reading a tunnel request or response header.</summary>
internal enum TunnelReadResult
{
    /// <summary>A whole header was read.</summary>
    Complete,

    /// <summary>More bytes are needed; nothing wrong has been seen so far.</summary>
    Incomplete,

    /// <summary>The stream ended before a whole header arrived.</summary>
    TruncatedStream,

    /// <summary>The request's body length exceeds <see cref="TunnelCodec.MaxRequestBodyLength"/>.</summary>
    Oversize,

    /// <summary>The version byte is neither <see cref="TunnelCodec.Version"/> (1) nor <see cref="TunnelCodec.Version2"/> (2).</summary>
    UnsupportedVersion,

    /// <summary>The request kind byte is not a <see cref="TunnelRequestKind"/>, or not TCP connect in a version 2 request.</summary>
    UnsupportedKind,

    /// <summary>The address family byte is neither 4 nor 6.</summary>
    InvalidAddressFamily,

    /// <summary>The destination port is 0.</summary>
    InvalidPort,

    /// <summary>The host hint is longer than 253 bytes or holds a byte other than an ASCII letter, digit, '-', '.' or '_'.</summary>
    InvalidHostHint,

    /// <summary>The body length does not match the body's fields (too short, trailing bytes, or a DNS body that is not empty).</summary>
    LengthMismatch,

    /// <summary>The response's status byte is not a <see cref="TunnelStatus"/>.</summary>
    UnknownStatus,
}
