using System.Net;
using Egress.Diagnostics;
using Egress.Interception;
using Egress.Policy;
using Egress.Relay;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;

namespace Egress.Proxy;

/// <summary>The enclave proxy's log lines: one per decision, each naming the destination and the reason.</summary>
internal static partial class ProxyLog
{
    [LoggerMessage(EventId = 125, Level = LogLevel.Warning, Message = "connection to {Destination} refused: {Reason} (server name {ServerName}, learned from {LearnedNames}, egress.tls_server_name = \"{Mode}\"); reset before any client byte was sent{ConnectionId:line}")]
    public static partial void ServerNameRefused(ILogger logger, EndPoint destination, string reason, string serverName, string learnedNames, string mode, ConnectionIdText connectionId);

    [LoggerMessage(EventId = 126, Level = LogLevel.Warning, Message = "connection to {Destination} would be refused (egress.mode = \"report\": relayed): {Reason} (server name {ServerName}, learned from {LearnedNames}, egress.tls_server_name = \"{Mode}\"){ConnectionId:line}")]
    public static partial void ServerNameWouldRefuse(ILogger logger, EndPoint destination, string reason, string serverName, string learnedNames, string mode, ConnectionIdText connectionId);

    [LoggerMessage(EventId = 119, Level = LogLevel.Information, Message = "proxy: {Pending} connections are being set up, the most at once {Limit}; further connections wait in the listen backlog until one is relaying or ends (waits since the last such line: {Waits})")]
    public static partial void SetupLimitReached(ILogger logger, int pending, string limit, long waits);

    [LoggerMessage(EventId = 120, Level = LogLevel.Information, Message = "proxy: {Destination} has {Share} connections being set up, its share of the places {Limit}; its further connections wait aside for a turn (after 250 ms, or at once while others do), without a place, while connections to other destinations go on (waits since the last such line: {Waits})")]
    public static partial void WaitingAside(ILogger logger, IPEndPoint destination, int share, string limit, long waits);

    [LoggerMessage(EventId = 123, Level = LogLevel.Information, Message = "proxy: {Given} connections being set up had waited 250 ms or more for the parent's status (to {Destinations}: slow to connect, or the parent slow to answer) while the accept loop waited for a setup place; they gave their places back and go on without one ({SetUpAside} now), so that connections to other destinations are not held in the listen backlog behind them ({HeldBack} more such lines held back since the last one)")]
    public static partial void SettingUpAside(ILogger logger, int given, string destinations, int setUpAside, long heldBack);

    [LoggerMessage(EventId = 121, Level = LogLevel.Warning, Message = "connection to {Destination} from {Client} refused: {Reason}; reset, so that connections to other destinations keep their places {HeldBack:line}")]
    public static partial void SetupShareFull(ILogger logger, IPEndPoint destination, EndPoint? client, string reason, HeldBackLines heldBack);

    [LoggerMessage(EventId = 122, Level = LogLevel.Warning, Message = "connection to {Destination} from {Client} refused: {Reason}; reset rather than dialled after its application may have given up {HeldBack:line}")]
    public static partial void SetupWaitTimedOut(ILogger logger, IPEndPoint destination, EndPoint? client, string reason, HeldBackLines heldBack);

    [LoggerMessage(EventId = 131, Level = LogLevel.Debug, Message = "connection to {Destination}: the pooled tunnel stream was closed by the parent while idle; request sent again on a new stream to {Tunnel}")]
    public static partial void StalePooledStream(ILogger logger, IPEndPoint destination, string tunnel);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "proxy listening on {EndPoint}, tunnel {Tunnel}; limits {Limits}")]
    public static partial void Listening(ILogger logger, EndPoint endPoint, string tunnel, string limits);

    [LoggerMessage(EventId = 102, Level = LogLevel.Warning, Message = "proxy not listening on {EndPoint}: IPv6 is unavailable here")]
    public static partial void IPv6Unavailable(ILogger logger, IPEndPoint endPoint);

    [LoggerMessage(EventId = 103, Level = LogLevel.Warning, Message = "refused connection from {Client}: not redirected ({Status}: {Detail}); connect through the DNAT rule, not to the proxy port")]
    public static partial void NotRedirected(ILogger logger, EndPoint? client, OriginalDestinationStatus status, string? detail);

    [LoggerMessage(EventId = 104, Level = LogLevel.Warning, Message = "connection to {Destination} {Decision}")]
    public static partial void Denied(ILogger logger, IPEndPoint destination, PolicyDecision decision);

    [LoggerMessage(EventId = 105, Level = LogLevel.Information, Message = "connection to {Destination} {Decision}{ConnectionId:line}")]
    public static partial void Allowed(ILogger logger, IPEndPoint destination, PolicyDecision decision, ConnectionIdText connectionId);

    [LoggerMessage(EventId = 106, Level = LogLevel.Warning, Message = "connection to {Destination} failed: parent answered {Status}: {Detail}{Advice}{ConnectionId:line}")]
    private static partial void ParentRefused(ILogger logger, IPEndPoint destination, TunnelStatus status, string detail, string advice, ConnectionIdText connectionId);

    /// <summary>The parent refused a connection this enclave allowed; a policy denial says where the two disagree. The
    /// connection id is the one sent in the request, which the parent's line names too (none on a version 1 stream).</summary>
    public static void ParentRefused(ILogger logger, IPEndPoint destination, TunnelStatus status, string detail, ulong connectionId) =>
        ParentRefused(logger, destination, status, detail, status != TunnelStatus.DeniedByPolicy ? string.Empty
            : detail.Contains(PolicyDecision.ParentAddressText, StringComparison.Ordinal) ? ParentAddressHint
            : detail.Contains(Gateway.HintRelearner.NotRelearned, StringComparison.Ordinal) ? NotRelearnedHint
            : PoliciesDisagree, new ConnectionIdText(connectionId));

    /// <summary>Whether the parent's answer says it is at one of its limits: <see cref="TunnelStatus.Failure"/> with a
    /// detail naming it (<c>parent: stream limit reached (host.max_streams = 1730, ...)</c>, <c>dns stream limit
    /// reached</c>, <c>descriptor limit reached</c>; every limit's reason says "limit reached"). Other Failure answers
    /// (a connect error of the destination, such as EACCES) are a line each.</summary>
    public static bool IsParentLimit(TunnelStatus status, string? detail) =>
        status == TunnelStatus.Failure && detail?.Contains(Connections.ConnectionAdmission.LimitReached, StringComparison.Ordinal) == true;

    /// <summary>The parent refused a connection at one of its limits (<see cref="IsParentLimit"/>), in a line rate-limited
    /// by the caller: <paramref name="heldBack"/> such lines were held back since the last one.</summary>
    public static void ParentAtLimit(ILogger logger, IPEndPoint destination, string detail, long heldBack) =>
        ParentRefused(logger, destination, TunnelStatus.Failure, detail, heldBack == 0 ? string.Empty : $" ({heldBack} more refused at a parent's limit since the last such line)", default);

    /// <summary>What a DeniedByPolicy answer for one of the parent's own addresses means: no disagreement, the enclave
    /// cannot know them.</summary>
    internal const string ParentAddressHint =
        " (egress-host denies its own addresses unless an entry names the one address, whatever else allows it; this enclave cannot know them, so the policies need not differ)";

    /// <summary>What a DeniedByPolicy answer means when the parent did not know the address and could not re-learn it
    /// from its name (a review: "the two policies disagree" sent the operator to the digests when the parent's DNS had failed).</summary>
    internal const string NotRelearnedHint =
        " (the parent did not know the address, e.g. restarted since the DNS answer, and could not resolve the name again for the reason it gives; this enclave's own answer does not count there)";

    /// <summary>What a DeniedByPolicy answer means when this enclave allowed the destination.</summary>
    internal const string PoliciesDisagree =
        " (this enclave allowed it, so the two policies disagree: compare the policy digests both hosts log at start, which differ when they read different enclave.toml files, or the parent has not learned the address: restarted since the DNS answer)";

    [LoggerMessage(EventId = 107, Level = LogLevel.Warning, Message = "connection to {Destination} failed: invalid answer from the parent ({Result})")]
    public static partial void BadParentResponse(ILogger logger, IPEndPoint destination, TunnelReadResult result);

    [LoggerMessage(EventId = 108, Level = LogLevel.Warning, Message = "connection to {Destination} failed: no answer from the parent within {TimeoutMs} ms")]
    public static partial void ParentTimedOut(ILogger logger, IPEndPoint destination, double timeoutMs);

    /// <summary>A v2 stream that ended without the parent's END frame, with the count of lines held back by its rate limit
    /// when there were any (<see cref="HeldBackLines"/>).</summary>
    [LoggerMessage(EventId = 128, Level = LogLevel.Warning, Message = "connection to {Destination} cut: {Error}; the parent at {Tunnel} stopped or was killed, or the tunnel broke, and the application's connection was reset{ConnectionId:line}{HeldBack:line}")]
    public static partial void TunnelCut(ILogger logger, IPEndPoint destination, string error, string tunnel, ConnectionIdText connectionId, HeldBackLines heldBack);

    /// <summary>The line, with the count of lines held back by its rate limit when there were any (<see cref="HeldBackLines"/>).</summary>
    [LoggerMessage(EventId = 109, Level = LogLevel.Warning, Message = "connection to {Destination} failed: tunnel {Tunnel} unavailable: {Error}{HeldBack:line}")]
    public static partial void TunnelUnavailable(ILogger logger, IPEndPoint destination, string tunnel, string error, HeldBackLines heldBack);

    [LoggerMessage(EventId = 111, Level = LogLevel.Warning, Message = "connection to {Destination} failed: timed out connecting to the tunnel {Tunnel} after {TimeoutMs} ms")]
    public static partial void TunnelConnectTimedOut(ILogger logger, IPEndPoint destination, string tunnel, double timeoutMs);

    [LoggerMessage(EventId = 112, Level = LogLevel.Information, Message = "connection to {Destination} not carried: stopping ({HeldBack} more since the last such line)")]
    public static partial void Stopping(ILogger logger, IPEndPoint destination, long heldBack);

    [LoggerMessage(EventId = 110, Level = LogLevel.Information, Message = "connection to {Destination} closed: {BytesOut} bytes out, {BytesIn} bytes in, {Cause}{Ends:line}, {DurationMs:F0} ms{ConnectionId:line}")]
    public static partial void Closed(ILogger logger, IPEndPoint destination, long bytesOut, long bytesIn, RelayShutdownCause cause, RelayEnds ends, double durationMs, ConnectionIdText connectionId);

    [LoggerMessage(EventId = 116, Level = LogLevel.Warning, Message = "the parent at {Tunnel} speaks only tunnel protocol v1 (an egress-host from before v2): connections go on in v1, where a reset or abort on the parent's side (destination RST, parent stopping) cannot be signalled, so applications may see a cut-short transfer as a clean end; upgrade egress-host. Asking for v2 again every {ReprobeSeconds} s")]
    public static partial void ParentSpeaksVersion1Only(ILogger logger, string tunnel, double reprobeSeconds);

    [LoggerMessage(EventId = 117, Level = LogLevel.Debug, Message = "the parent at {Tunnel} still speaks only tunnel protocol v1")]
    public static partial void ParentStillVersion1Only(ILogger logger, string tunnel);

    [LoggerMessage(EventId = 118, Level = LogLevel.Information, Message = "the parent at {Tunnel} speaks tunnel protocol v2 again")]
    public static partial void ParentSpeaksVersion2(ILogger logger, string tunnel);

    [LoggerMessage(EventId = 113, Level = LogLevel.Information, Message = "connection to {Destination}: the destination answered {Status}{ConnectionId:line}; failing over to {Alternative}, also learned from {Name} (attempt {Attempt} of {Attempts})")]
    public static partial void FailingOver(ILogger logger, IPEndPoint destination, TunnelStatus status, ConnectionIdText connectionId, IPEndPoint alternative, string name, int attempt, int attempts);

    [LoggerMessage(EventId = 124, Level = LogLevel.Information, Message = "connection to {Destination}: the parent could not reach it {Ago} ({Status}); trying {Others} other address(es) of {Name} first, then it{HeldBack:line}")]
    public static partial void TryingOthersFirst(ILogger logger, IPEndPoint destination, string ago, TunnelStatus status, int others, string name, HeldBackLines heldBack);

    [LoggerMessage(EventId = 129, Level = LogLevel.Information, Message = "connection to {Destination}: the parent could not reach it {Seconds} s ago ({Status}); this connection dials it first again, to see whether it answers now (one at a time: the others still try the other addresses of {Name} first)")]
    public static partial void ProbingAgain(ILogger logger, IPEndPoint destination, long seconds, TunnelStatus status, string name);

    [LoggerMessage(EventId = 127, Level = LogLevel.Information, Message = "connection to {Destination}: the destination answered {Status}{ConnectionId:line}; not failing over to another address of {Name}: the application has closed its side meanwhile (it may have given up: its bytes are not sent to another address)")]
    public static partial void NoFailoverApplicationClosed(ILogger logger, IPEndPoint destination, TunnelStatus status, ConnectionIdText connectionId, string name);

    [LoggerMessage(EventId = 114, Level = LogLevel.Information, Message = "connection to {Destination}: the destination answered {Status}{ConnectionId:line}; no other live address of {Name} to fail over to")]
    public static partial void NoFailover(ILogger logger, IPEndPoint destination, TunnelStatus status, ConnectionIdText connectionId, string name);

    [LoggerMessage(EventId = 115, Level = LogLevel.Warning, Message = "connection to {Destination} failed: none of {Attempts} other address(es) of {Name} connected either")]
    public static partial void FailoverExhausted(ILogger logger, IPEndPoint destination, string name, int attempts);
}
