using Egress.Tunnel;

namespace Egress.Relay;

/// <summary>
/// How a version 2 (framed) tunnel stream ended, per direction: the END cause this side sent and the one it received.
/// Null means no END frame: not sent (the tunnel failed mid-frame) or not received (the stream ended, or failed,
/// before its END frame, which counts as an abort).
/// </summary>
/// <param name="Sent">The cause of the END frame this side wrote to the tunnel.</param>
/// <param name="Received">The cause of the END frame read from the tunnel.</param>
internal readonly record struct FramedStreamEnd(TunnelEndCause? Sent, TunnelEndCause? Received)
{
    /// <summary>Whether both directions ended with END(FIN): nothing was cut short and the stream is at a frame boundary.</summary>
    public bool IsClean => Sent == TunnelEndCause.Fin && Received == TunnelEndCause.Fin;

    /// <summary>For log lines: e.g. <c>sent FIN, received RST</c>, <c>received none</c>.</summary>
    public override string ToString() => $"sent {Name(Sent)}, received {Name(Received)}";

    /// <summary>A cause's name for logs: FIN, RST, Error, IdleTimeout, Stopping, ProtocolError, "cause N" for an unknown code, "no END".</summary>
    internal static string Name(TunnelEndCause? cause) => cause switch
    {
        null => "no END",
        TunnelEndCause.Fin => "FIN",
        TunnelEndCause.Reset => "RST",
        { } defined when Enum.IsDefined(defined) => defined.ToString(),
        { } other => $"cause {(byte)other}",
    };
}
