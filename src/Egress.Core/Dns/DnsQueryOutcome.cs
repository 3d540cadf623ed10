namespace Egress.Dns;

/// <summary>How one DNS query was answered, by the enclave forwarder or by the parent; <see cref="DnsQueryResult"/>
/// carries it and derives from it the answer written (RCODE, Extended DNS Error) and the metric tag.</summary>
internal enum DnsQueryOutcome
{
    /// <summary>Forwarded and answered verbatim (<c>forwarded</c>).</summary>
    Forwarded,

    /// <summary>Forwarded, and the answer cut for a UDP client with TC=1 (<c>truncated</c>; enclave only).</summary>
    Truncated,

    /// <summary>The name is outside the allowlist: NXDOMAIN with an Extended DNS Error when the query has EDNS
    /// (<c>denied</c>); nothing forwarded.</summary>
    DeniedName,

    /// <summary>No answer from the parent or the upstreams (timeout, failed stream, socket error, a mismatched
    /// answer): SERVFAIL (<c>servfail</c>).</summary>
    UpstreamFailed,

    /// <summary>Refused for load: the client, the stream or all clients together have too many queries in flight;
    /// SERVFAIL with an Extended DNS Error when the query has EDNS (<c>overloaded</c>); nothing forwarded.</summary>
    Overloaded,

    /// <summary>A malformed query: FORMERR (<c>formerr</c>).</summary>
    FormErr,

    /// <summary>An opcode other than QUERY: NOTIMP (<c>notimp</c>).</summary>
    NotImp,

    /// <summary>An EDNS version other than 0: BADVERS (<c>badvers</c>).</summary>
    BadVers,

    /// <summary>Not answerable at all (no readable header, or a response): dropped (<c>dropped</c>).</summary>
    Dropped,
}
