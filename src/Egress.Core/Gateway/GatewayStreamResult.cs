using System.Net;
using Egress.Diagnostics;
using Egress.Policy;
using Egress.Relay;
using Egress.Tunnel;

namespace Egress.Gateway;

/// <summary>
/// What one tunnel stream came to: the outcome and what it carries (the request, the parent's policy decision,
/// the dial status, the relay's totals). The status answered to the enclave, the metric tags and the tunnel error
/// kind are derived here, in one place; <see cref="TunnelStreamHandler"/>'s <c>Complete</c> logs from the same outcome.
/// </summary>
internal sealed record GatewayStreamResult
{
    private GatewayStreamResult(StreamOutcome outcome) => Outcome = outcome;

    /// <summary>Gets what happened.</summary>
    public StreamOutcome Outcome { get; }

    /// <summary>Gets the request (default before one was read).</summary>
    public TunnelRequest Request { get; private init; }

    /// <summary>Gets the request's TCP destination (null for a DNS request or none read), decoded from the request once per
    /// result rather than at each use (<see cref="TunnelRequest.Destination"/> creates an endpoint per read).</summary>
    public IPEndPoint? Destination
    {
        get => _destination ??= Request.Destination;
        private init => _destination = value;
    }

    private IPEndPoint? _destination;

    /// <summary>Gets the parent's policy decision (<see cref="StreamOutcome.Denied"/>, <see cref="StreamOutcome.Relayed"/>).</summary>
    public PolicyDecision Decision { get; private init; }

    /// <summary>Gets the dial's status (<see cref="StreamOutcome.ConnectFailed"/>) or the decoding error's status
    /// (<see cref="StreamOutcome.BadRequest"/>).</summary>
    public TunnelStatus Status { get; private init; }

    /// <summary>Gets how the request failed to decode (<see cref="StreamOutcome.BadRequest"/>).</summary>
    public TunnelReadResult ReadResult { get; private init; }

    /// <summary>Gets the detail: the dial error, the socket error, or why a denied destination was not re-learned from its hint.</summary>
    public string? Detail { get; private init; }

    /// <summary>Gets why the stream was refused (<see cref="StreamOutcome.StreamLimit"/>), naming the limit reached,
    /// e.g. "stream limit reached (host.max_streams = 1)", or the peer (<see cref="StreamOutcome.PeerRefused"/>).</summary>
    public string? LimitReason { get; private init; }

    /// <summary>Gets how the DNS stream ended (<see cref="StreamOutcome.DnsServed"/>).</summary>
    public Dns.DnsStreamEnd DnsEnd { get; private init; }

    /// <summary>Gets the relay's totals (<see cref="StreamOutcome.Relayed"/>).</summary>
    public RelayResult? Relay { get; private init; }

    /// <summary>Gets the server name of the ClientHello that came through the tunnel, when the server-name check read one.</summary>
    public string? ServerName { get; private init; }

    /// <summary>Gets why the server-name check refused the connection (or would have, in report mode); null when it did not.</summary>
    public string? ServerNameRefusal { get; private init; }

    /// <summary>Gets the status and detail the enclave is answered with before the stream closes; null when nothing
    /// is answered (Ok for a relayed or DNS stream was sent when it started).</summary>
    public TunnelResponse? Answer => Outcome switch
    {
        StreamOutcome.HeaderTimeout => new TunnelResponse(TunnelStatus.BadRequest, "no complete request within the header timeout"),
        StreamOutcome.BadRequest => new TunnelResponse(Status, $"invalid request: {ReadResult}"),
        StreamOutcome.StreamLimit or StreamOutcome.PeerRefused => new TunnelResponse(TunnelStatus.Failure, $"parent: {LimitReason}"),
        StreamOutcome.UnsupportedKind => new TunnelResponse(TunnelStatus.UnsupportedKind, $"{Request.Kind} streams are not served by this gateway"),
        StreamOutcome.Denied => new TunnelResponse(TunnelStatus.DeniedByPolicy, Detail is null ? "parent: " + Decision : $"parent: {Decision} ({Detail})"),
        StreamOutcome.ConnectFailed => new TunnelResponse(Status, Detail),
        _ => null,
    };

    /// <summary>The <see cref="ConnectionTags"/> of a relayed connection allowed by <paramref name="decision"/>, counted when
    /// its relay starts (before its result exists).</summary>
    public static (string Outcome, string Reason) RelayedTags(PolicyDecision decision) => ("allowed", MetricTag.Of(decision.Reason));

    /// <summary>Gets the <c>egress.outcome</c> and <c>egress.reason</c> tags of <c>egress.connections</c> (snake_case);
    /// null for a stream that is not a connection decision.</summary>
    public (string Outcome, string Reason)? ConnectionTags => Outcome switch
    {
        StreamOutcome.Relayed => RelayedTags(Decision),
        StreamOutcome.Denied => ("denied", MetricTag.Of(Decision.Reason)),
        StreamOutcome.ConnectFailed => ("failed", MetricTag.Of(Status)),
        _ => null,
    };

    /// <summary>Gets the <c>egress.error</c> tag of <c>egress.tunnel.errors</c>; null when the stream did not fail.</summary>
    public string? TunnelError => Outcome switch
    {
        StreamOutcome.HeaderTimeout or StreamOutcome.BadRequest or StreamOutcome.StreamLimit or StreamOutcome.PeerRefused
            or StreamOutcome.UnsupportedKind or StreamOutcome.StreamFailed => MetricTag.Of(Outcome),
        _ => null,
    };

    public static GatewayStreamResult ClosedBeforeRequest { get; } = new(StreamOutcome.ClosedBeforeRequest);

    public static GatewayStreamResult HeaderTimedOut { get; } = new(StreamOutcome.HeaderTimeout);

    public static GatewayStreamResult BadRequestOf(TunnelReadResult result) =>
        new(StreamOutcome.BadRequest) { ReadResult = result, Status = TunnelCodec.StatusFor(result) };

    public static GatewayStreamResult StreamLimitOf(TunnelRequest request, string reason) =>
        new(StreamOutcome.StreamLimit) { Request = request, LimitReason = reason };

    public static GatewayStreamResult PeerRefusedOf(TunnelRequest request, string reason) =>
        new(StreamOutcome.PeerRefused) { Request = request, LimitReason = reason };

    public static GatewayStreamResult Unsupported(TunnelRequest request) => new(StreamOutcome.UnsupportedKind) { Request = request };

    public static GatewayStreamResult DnsServed(TunnelRequest request, Dns.DnsStreamEnd end) => new(StreamOutcome.DnsServed) { Request = request, DnsEnd = end };

    public static GatewayStreamResult DenialReportRead(TunnelRequest request) => new(StreamOutcome.DenialReport) { Request = request };

    /// <summary>A denied TCP request; <paramref name="relearnFailure"/>: why its hint did not re-learn the address here,
    /// for the enclave (in the response's detail), null when that was not tried.</summary>
    public static GatewayStreamResult Denied(TunnelRequest request, IPEndPoint destination, PolicyDecision decision, string? relearnFailure = null) =>
        new(StreamOutcome.Denied) { Request = request, Destination = destination, Decision = decision, Detail = relearnFailure };

    public static GatewayStreamResult ConnectFailed(TunnelRequest request, IPEndPoint destination, PolicyDecision decision, TunnelStatus status, string? detail) =>
        new(StreamOutcome.ConnectFailed) { Request = request, Destination = destination, Decision = decision, Status = status, Detail = detail };

    public static GatewayStreamResult Relayed(
        TunnelRequest request, IPEndPoint destination, PolicyDecision decision, RelayResult relay, string? serverName, string? serverNameRefusal) =>
        new(StreamOutcome.Relayed)
        {
            Request = request, Destination = destination, Decision = decision, Relay = relay, ServerName = serverName, ServerNameRefusal = serverNameRefusal,
        };

    public static GatewayStreamResult Failed(string error) => new(StreamOutcome.StreamFailed) { Detail = error };
}
