namespace Egress.Gateway;

/// <summary>How one tunnel stream the gateway accepted ended; <see cref="GatewayStreamResult"/> carries it with its
/// details and derives from it the status answered to the enclave and the metric tags.</summary>
internal enum StreamOutcome
{
    /// <summary>Allowed, dialled, answered Ok, and relayed to its end.</summary>
    Relayed,

    /// <summary>A DNS stream, answered Ok and served until the enclave closed it or the gateway stopped.</summary>
    DnsServed,

    /// <summary>The enclave closed the stream before a complete request (nothing is answered).</summary>
    ClosedBeforeRequest,

    /// <summary>No complete request within the header timeout (answered BadRequest).</summary>
    HeaderTimeout,

    /// <summary>The request could not be decoded (answered with the status for the decoding error).</summary>
    BadRequest,

    /// <summary>More streams than <c>host.max_streams</c> (answered Failure).</summary>
    StreamLimit,

    /// <summary>A request kind this gateway does not serve (answered UnsupportedKind).</summary>
    UnsupportedKind,

    /// <summary>The parent's policy denied the destination (answered DeniedByPolicy; nothing dialled).</summary>
    Denied,

    /// <summary>Dialling the destination failed (answered ConnectionRefused, Unreachable, TimedOut or Failure).</summary>
    ConnectFailed,

    /// <summary>The stream failed with a socket error (nothing more can be answered).</summary>
    StreamFailed,

    /// <summary>The VSOCK peer's CID is not mapped by <c>[[host.enclaves]]</c> (answered Failure with the reason).</summary>
    PeerRefused,

    /// <summary>A denial report was read whole, its records logged and counted (docs/tunnel-protocol.md, "Denial reports").</summary>
    DenialReport,
}
