using System.Net;

namespace Egress.Audit;

/// <summary>
/// One connection's audit record: one JSON line per connection attempt that reached a policy decision, written by
/// each host when the connection ends (see <see cref="AuditLog"/> for the line's fields). Both hosts write the same
/// <see cref="ConnectionId"/> for one connection, so their lines can be joined. The parent also writes one for each
/// record of an enclave's denial report (<see cref="DenialReport"/>): denials that never reached the parent as
/// connections.
/// </summary>
internal readonly record struct AuditRecord
{
    /// <summary>Gets when the connection ended (UTC).</summary>
    public required DateTimeOffset Time { get; init; }

    /// <summary>Gets which host wrote the record: <c>enclave</c> or <c>parent</c>.</summary>
    public required string Side { get; init; }

    /// <summary>Gets the connection's id, chosen by the enclave and carried in the tunnel request (tunnel v2); null
    /// when there is none (a v1 stream, or a connection refused before a tunnel stream was opened).</summary>
    public ulong? ConnectionId { get; init; }

    /// <summary>Gets the enclave's VSOCK CID the stream came from (the parent, over VSOCK); null otherwise.</summary>
    public uint? Cid { get; init; }

    /// <summary>Gets the destination address and port.</summary>
    public IPEndPoint? Destination { get; init; }

    /// <summary>Gets the name the address was learned from, by this host's own DNS answers; null when the decision did not
    /// come from a learned name.</summary>
    public string? Name { get; init; }

    /// <summary>Gets the host hint the enclave's request carried (the parent's records only): the enclave's word, not
    /// checked; null when none.</summary>
    public string? HostHint { get; init; }

    /// <summary>Gets the allowlist entry, learned name or range that decided (the decision's subject); null when none.</summary>
    public string? Entry { get; init; }

    /// <summary>Gets <c>allowed</c> or <c>denied</c>.</summary>
    public required string Decision { get; init; }

    /// <summary>Gets the decision's reason as a snake_case tag (as the metrics' <c>egress.reason</c>), e.g. <c>learned</c>.</summary>
    public required string Reason { get; init; }

    /// <summary>Gets the decision as one human line, e.g. <c>allowed: learned from api.example.com, expires in 30s</c>.</summary>
    public required string DecisionText { get; init; }

    /// <summary>Gets the TLS server name (SNI) the client sent, when it sent a ClientHello with one; null otherwise.</summary>
    public string? ServerName { get; init; }

    /// <summary>Gets how the connection came out, as the metrics' <c>egress.outcome</c>: <c>allowed</c>, <c>denied</c>, <c>failed</c>.</summary>
    public required string Outcome { get; init; }

    /// <summary>Gets the failure's detail (the parent's status, the dial error); null when none.</summary>
    public string? Detail { get; init; }

    /// <summary>Gets the bytes the application sent towards the destination.</summary>
    public long BytesOut { get; init; }

    /// <summary>Gets the bytes the destination sent towards the application.</summary>
    public long BytesIn { get; init; }

    /// <summary>Gets how long the relay ran; zero when there was none.</summary>
    public TimeSpan Duration { get; init; }

    /// <summary>Gets the denial-report record this audit record stands for (the parent's, one per record of a report);
    /// null for a connection's record. Such a record has no connection id, destination, byte counts, duration or close
    /// cause.</summary>
    public Tunnel.DenialRecord? DenialReport { get; init; }

    /// <summary>Gets the first cause of the close (e.g. <c>BothCompleted</c>, <c>BReadError</c>); null when nothing was relayed.</summary>
    public string? CloseCause { get; init; }
}
