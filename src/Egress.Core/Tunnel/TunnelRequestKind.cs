namespace Egress.Tunnel;

/// <summary>What a tunnel stream carries after the parent answers <see cref="TunnelStatus.Ok"/>.</summary>
internal enum TunnelRequestKind : byte
{
    /// <summary>A TCP connection to the request's destination; raw bytes are relayed both ways.</summary>
    TcpConnect = 1,

    /// <summary>DNS messages, each prefixed with a big-endian 16-bit length, in both directions.</summary>
    Dns = 2,

    /// <summary>
    /// A denial report: the enclave's counts of what its own policy denied (docs/tunnel-protocol.md, "Denial reports"),
    /// records of <see cref="DenialReportCodec"/> until an end byte; the parent logs and counts them and closes the stream.
    /// Version 1 only, with an empty body, like <see cref="Dns"/>; a parent from before it answers
    /// <see cref="TunnelStatus.UnsupportedKind"/>.
    /// </summary>
    DenialReport = 3,
}
