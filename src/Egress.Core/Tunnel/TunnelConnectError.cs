namespace Egress.Tunnel;

/// <summary>Why <see cref="TunnelClient.ConnectAsync"/> gave no connected stream; <see cref="None"/> when it did.</summary>
public enum TunnelConnectError
{
    /// <summary>The parent answered <see cref="TunnelStatus.Ok"/>: the stream is connected to the destination.</summary>
    None,

    /// <summary>The tunnel stream could not be opened (nothing listens, the peer is gone, a socket error).</summary>
    TunnelUnavailable,

    /// <summary>Opening the tunnel stream did not finish within the status timeout.</summary>
    TunnelTimedOut,

    /// <summary>The parent answered with a status other than Ok (<see cref="TunnelConnectResult.Status"/> says which).</summary>
    Refused,

    /// <summary>The parent's answer was not a valid response header, or the stream ended before one arrived.</summary>
    BadResponse,

    /// <summary>The stream was open but the parent did not answer within the status timeout.</summary>
    StatusTimedOut,
}
