namespace Egress.Relay;

/// <summary>One of a relay's two sides.</summary>
internal enum RelaySide
{
    /// <summary>Side A (the proxy: the application's socket; the gateway: the tunnel stream).</summary>
    A,

    /// <summary>Side B (the proxy: the tunnel stream; the gateway: the destination's socket).</summary>
    B,
}
