using System.Net;
using Egress.Diagnostics;
using Egress.Dns;
using Egress.Policy;
using Egress.Relay;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;

namespace Egress.Gateway;

/// <summary>The parent gateway's log lines: one per stream decision, naming the destination and the reason.</summary>
internal static partial class GatewayLog
{
    [LoggerMessage(EventId = 225, Level = LogLevel.Warning, Message = "connection to {Destination}{Hint:line} refused: {Reason} (server name {ServerName}, learned from {LearnedNames}, egress.tls_server_name = \"{Mode}\"); reset before any client byte was sent{ConnectionId:line}")]
    public static partial void ServerNameRefused(ILogger logger, EndPoint destination, HostHintText hint, string reason, string serverName, string learnedNames, string mode, ConnectionIdText connectionId);

    [LoggerMessage(EventId = 227, Level = LogLevel.Warning, Message = "connection to {Destination}{Hint:line} refused by the enclave's TLS server-name check (END Refused; its log names the server name); no client byte reached the destination{ConnectionId:line}")]
    public static partial void EnclaveRefusedServerName(ILogger logger, EndPoint destination, HostHintText hint, ConnectionIdText connectionId);

    [LoggerMessage(EventId = 226, Level = LogLevel.Warning, Message = "connection to {Destination}{Hint:line} would be refused (egress.mode = \"report\": relayed): {Reason} (server name {ServerName}, learned from {LearnedNames}, egress.tls_server_name = \"{Mode}\"){ConnectionId:line}")]
    public static partial void ServerNameWouldRefuse(ILogger logger, EndPoint destination, HostHintText hint, string reason, string serverName, string learnedNames, string mode, ConnectionIdText connectionId);

    [LoggerMessage(EventId = 201, Level = LogLevel.Information, Message = "gateway listening on {Tunnel}; limits {Limits}")]
    public static partial void Listening(ILogger logger, string tunnel, string limits);

    [LoggerMessage(EventId = 202, Level = LogLevel.Warning, Message = "connection to {Destination}{Hint:line} {Decision}{ConnectionId:line}")]
    public static partial void Denied(ILogger logger, IPEndPoint destination, HostHintText hint, PolicyDecision decision, ConnectionIdText connectionId);

    [LoggerMessage(EventId = 203, Level = LogLevel.Information, Message = "connection to {Destination}{Hint:line} {Decision}, connected{ConnectionId:line}")]
    public static partial void Connected(ILogger logger, IPEndPoint destination, HostHintText hint, PolicyDecision decision, ConnectionIdText connectionId);

    [LoggerMessage(EventId = 204, Level = LogLevel.Warning, Message = "connection to {Destination}{Hint:line} failed: {Status}: {Detail}{ConnectionId:line}")]
    public static partial void ConnectFailed(ILogger logger, IPEndPoint destination, HostHintText hint, TunnelStatus status, string? detail, ConnectionIdText connectionId);

    [LoggerMessage(EventId = 205, Level = LogLevel.Warning, Message = "rejected stream: unsupported kind {Kind}")]
    public static partial void Unsupported(ILogger logger, TunnelRequestKind kind);

    [LoggerMessage(EventId = 206, Level = LogLevel.Warning, Message = "rejected stream: invalid request ({Result}), answered {Status}")]
    public static partial void BadRequest(ILogger logger, TunnelReadResult result, TunnelStatus status);

    [LoggerMessage(EventId = 207, Level = LogLevel.Warning, Message = "rejected stream: no complete request within {TimeoutMs} ms")]
    public static partial void HeaderTimeout(ILogger logger, double timeoutMs);

    [LoggerMessage(EventId = 231, Level = LogLevel.Debug, Message = "tunnel stream kept for reuse closed between requests: {End}")]
    public static partial void IdleStreamClosed(ILogger logger, string end);

    [LoggerMessage(EventId = 208, Level = LogLevel.Debug, Message = "stream closed before sending a request")]
    public static partial void ClosedBeforeRequest(ILogger logger);

    [LoggerMessage(EventId = 209, Level = LogLevel.Warning, Message = "stream failed: {Error}")]
    public static partial void StreamFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 210, Level = LogLevel.Information, Message = "connection to {Destination} closed: {BytesOut} bytes out, {BytesIn} bytes in, {Cause}{Ends:line}, {DurationMs:F0} ms{ConnectionId:line}")]
    public static partial void Closed(ILogger logger, IPEndPoint destination, long bytesOut, long bytesIn, RelayShutdownCause cause, RelayEnds ends, double durationMs, ConnectionIdText connectionId);

    [LoggerMessage(EventId = 212, Level = LogLevel.Warning, Message = "connection to {Destination} aborted: the destination stopped answering keepalive probes ({Probes} unanswered, {DeadAfterSeconds} s after the last data); tunnel stream reset")]
    public static partial void KeepAliveTimedOut(ILogger logger, IPEndPoint destination, int probes, double deadAfterSeconds);

    [LoggerMessage(EventId = 213, Level = LogLevel.Information, Message = "re-learned {Address} from hint {Hint}: the parent's own DNS answer for it contains the address")]
    public static partial void Relearned(ILogger logger, IPAddress address, string hint);

    [LoggerMessage(EventId = 214, Level = LogLevel.Warning, Message = "could not re-learn {Address} from hint {Hint}: {Why}")]
    public static partial void RelearnFailed(ILogger logger, IPAddress address, string hint, string why);

    [LoggerMessage(EventId = 216, Level = LogLevel.Information, Message = "enclave {Enclave}: {Policy}")]
    public static partial void EnclavePolicy(ILogger logger, string enclave, string policy);

    /// <summary>A stream refused at one of the parent's limits (streams, DNS streams, descriptors); rate-limited per
    /// request kind (<see cref="Diagnostics.LogRateLimit"/>): an enclave app opening connections in a loop at the limit
    /// would otherwise write a line per connection.</summary>
    /// <summary>Streams beyond an enclave's share of <c>host.max_streams</c> while the most are being answered: reset
    /// unanswered (rate-limited).</summary>
    [LoggerMessage(EventId = 261, Level = LogLevel.Warning, Message = "stream reset unanswered: {Reason}, and {Answering} such refusals are being answered already ({HeldBack} more since the last such line)")]
    public static partial void OverShareReset(ILogger logger, string reason, int answering, long heldBack);

    [LoggerMessage(EventId = 218, Level = LogLevel.Warning, Message = "{Reason}: closed a DNS stream so that a new one could open: {Closed}; a stream whose queries go upstream keeps its place ({HeldBack} more such closes since the last such line)")]
    public static partial void DnsStreamGivenUp(ILogger logger, string reason, string closed, long heldBack);

    [LoggerMessage(EventId = 211, Level = LogLevel.Warning, Message = "rejected {Kind} stream{Target:line}: {Reason}{HeldBack:line}")]
    public static partial void StreamLimit(ILogger logger, TunnelRequestKind kind, StreamTargetText target, string reason, HeldBackLines heldBack);

    /// <summary>A stream refused because of its peer (an enclave CID that [[host.enclaves]] does not map): a line each.</summary>
    [LoggerMessage(EventId = 217, Level = LogLevel.Warning, Message = "rejected {Kind} stream{Target:line}: {Reason}")]
    public static partial void PeerRefused(ILogger logger, TunnelRequestKind kind, StreamTargetText target, string reason);

    [LoggerMessage(EventId = 215, Level = LogLevel.Warning, Message = "tunnel {Endpoint} is TCP on a non-loopback address and has no authentication: anything that reaches it can use this parent as a proxy to every allowed destination; tcp:// is for development, use vsock:// (or firewall the port)")]
    public static partial void UnauthenticatedTcpTunnel(ILogger logger, string endpoint);

    [LoggerMessage(EventId = 220, Level = LogLevel.Information, Message = "this machine's own addresses are denied unless an entry names the address: {Addresses}")]
    public static partial void ParentAddresses(ILogger logger, string addresses);

    [LoggerMessage(EventId = 228, Level = LogLevel.Information, Message = "internal networks besides the built-in ranges ([host] internal_networks), denied unless an address or network entry covers them: {Networks}")]
    public static partial void InternalNetworks(ILogger logger, string networks);

    [LoggerMessage(EventId = 221, Level = LogLevel.Information, Message = "this machine's own addresses changed (denied unless an entry names the address): added {Added}; removed {Removed}")]
    public static partial void ParentAddressesChanged(ILogger logger, string added, string removed);

    [LoggerMessage(EventId = 222, Level = LogLevel.Warning, Message = "cannot watch this machine's addresses, routes and routing rules for changes any more ({Reason}); they are re-read every {Seconds} s only")]
    public static partial void ParentAddressesNotWatched(ILogger logger, string reason, int seconds);

    [LoggerMessage(EventId = 232, Level = LogLevel.Warning, Message = "{Enclave} denied {Count} {What} {Subject} ({Reason}) in the last {Seconds} s (its denial report)")]
    public static partial void EnclaveDenied(ILogger logger, string enclave, uint count, string what, string subject, string reason, int seconds);

    [LoggerMessage(EventId = 235, Level = LogLevel.Information, Message = "the {Enclave} reads the same policy as this parent's for it ({Digest}; its denial report)")]
    public static partial void EnclavePolicyMatches(ILogger logger, string enclave, string digest);

    [LoggerMessage(EventId = 236, Level = LogLevel.Warning, Message = "the {Enclave} reads policy {Theirs}, but this parent's for it is {Ours} ({Source}): the two enclave.toml files differ in [egress] or [dns] (its denial report), so one side can deny what the other allows; both hosts log their policy digest at start and `egress-enclave check` prints it, to compare the files")]
    public static partial void EnclavePolicyDiffers(ILogger logger, string enclave, string theirs, string ours, string source);

    [LoggerMessage(EventId = 234, Level = LogLevel.Warning, Message = "{HeldBack} more denial reports of the {Enclave} were held back by the limit of one report's lines a second since its last report logged (their records are counted in egress.enclave.denials)")]
    public static partial void EnclaveDenialsHeldBack(ILogger logger, string enclave, long heldBack);

    [LoggerMessage(EventId = 251, Level = LogLevel.Information, Message = "DNS upstreams: {Upstreams}")]
    public static partial void DnsUpstreams(ILogger logger, string upstreams);

    /// <summary>Debug: the enclave opens a DNS stream on its first query after 30 s without one (the upstreams are
    /// logged at Information at start, event 251).</summary>
    [LoggerMessage(EventId = 252, Level = LogLevel.Debug, Message = "dns stream opened; upstreams {Upstreams}")]
    public static partial void DnsStreamOpened(ILogger logger, string upstreams);

    /// <summary>An ordinary end (closed by the enclave, idle, stopping): Debug, as the open.</summary>
    [LoggerMessage(EventId = 253, Level = LogLevel.Debug, Message = "dns stream closed: {Reason}")]
    public static partial void DnsStreamClosed(ILogger logger, string reason);

    /// <summary>Any other end (reset, a frame cut short or timed out, an enclave that took no answer): Information.</summary>
    [LoggerMessage(EventId = 253, Level = LogLevel.Information, Message = "dns stream closed: {Reason}")]
    public static partial void DnsStreamEnded(ILogger logger, string reason);

    [LoggerMessage(EventId = 254, Level = LogLevel.Warning, Message = "denied DNS {Name} {Type}: parent: {Decision}; answered NXDOMAIN{HeldBack:line}")]
    public static partial void DnsDenied(ILogger logger, string name, string type, string decision, HeldBackLines heldBack);

    [LoggerMessage(EventId = 255, Level = LogLevel.Debug, Message = "DNS query on a tunnel stream not forwarded ({Reason}): {Action}")]
    public static partial void DnsNotForwarded(ILogger logger, string reason, string action);

    /// <summary>The line, with the count of lines held back by its rate limit when there were any (<see cref="HeldBackLines"/>).</summary>
    [LoggerMessage(EventId = 256, Level = LogLevel.Warning, Message = "SERVFAIL for DNS {Name} {Type}: {Reason}{HeldBack:line}")]
    public static partial void DnsUpstreamFailed(ILogger logger, string name, string type, string reason, HeldBackLines heldBack);

    [LoggerMessage(EventId = 259, Level = LogLevel.Warning, Message = "DNS upstream {Upstream} left {Misses} queries in a row unanswered within their share of the timeout (the last for {Name}, {ShareMs:F0} ms); the other upstreams are asked first for the next {QuietSeconds:F0} s")]
    public static partial void DnsUpstreamQuiet(ILogger logger, IPEndPoint upstream, int misses, string name, double shareMs, double quietSeconds);

    [LoggerMessage(EventId = 260, Level = LogLevel.Information, Message = "DNS upstream {Upstream} answers again; asked in its configured place")]
    public static partial void DnsUpstreamAnswersAgain(ILogger logger, IPEndPoint upstream);

    [LoggerMessage(EventId = 257, Level = LogLevel.Warning, Message = "no DNS upstreams: none configured and none found in the system's resolver configuration; DNS queries will get SERVFAIL")]
    public static partial void NoDnsUpstreams(ILogger logger);
}
