namespace Egress.Proxy;

/// <summary>How one connection the proxy accepted ended; <see cref="ProxyConnectionResult"/> carries it with its
/// details, and derives from it the metric tags and whether the application's socket is reset.</summary>
internal enum ConnectionOutcome
{
    /// <summary>Allowed, the parent answered Ok, and the relay ran to its end (the application's socket is closed).</summary>
    Relayed,

    /// <summary>The connection reached the proxy port without a DNAT (no original destination).</summary>
    NotRedirected,

    /// <summary>The enclave's policy denied the destination; nothing was sent to the parent.</summary>
    Denied,

    /// <summary>The parent answered a status other than Ok (its own policy denial included).</summary>
    ParentRefused,

    /// <summary>The parent's answer could not be decoded.</summary>
    BadParentResponse,

    /// <summary>The tunnel connected but the parent did not answer within the status timeout.</summary>
    StatusTimeout,

    /// <summary>Connecting the tunnel stream took longer than the status timeout.</summary>
    TunnelConnectTimeout,

    /// <summary>The tunnel stream could not be connected, or failed before the parent answered.</summary>
    TunnelUnavailable,

    /// <summary>The proxy is stopping: the connection was not carried.</summary>
    Stopping,

    /// <summary>Its destination had its share of the setup places and the most connections already waited aside for a
    /// turn (<see cref="Connections.SetupTurn.Full"/>): reset at once, nothing sent to the parent.</summary>
    SetupShareFull,

    /// <summary>Its destination had its share of the setup places and its turn did not come within the status timeout
    /// (<see cref="Connections.SetupTurn.TimedOut"/>): reset, nothing sent to the parent.</summary>
    SetupWaitTimeout,
}
