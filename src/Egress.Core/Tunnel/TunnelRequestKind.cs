namespace Egress.Tunnel;

/// <summary>What a tunnel stream carries after the parent answers <see cref="TunnelStatus.Ok"/>.</summary>
internal enum TunnelRequestKind : byte
{
    /// <summary>A TCP connection to the request's destination; raw bytes are relayed both ways.</summary>
    TcpConnect = 1,

    /// <summary>DNS messages, each prefixed with a big-endian 16-bit length, in both directions.</summary>
    Dns = 2,
}
