using System.Net;
using Egress.Diagnostics;
using Egress.Dns.Wire;
using Egress.Policy;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;

namespace Egress.Dns;

/// <summary>The DNS forwarders' log lines (the enclave's and, for learning, the parent's).</summary>
internal static partial class DnsLog
{
    [LoggerMessage(EventId = 301, Level = LogLevel.Information, Message = "dns forwarder listening on {EndPoint} (udp+tcp), tunnel {Tunnel}")]
    public static partial void Listening(ILogger logger, EndPoint endPoint, string tunnel);

    [LoggerMessage(EventId = 302, Level = LogLevel.Warning, Message = "denied DNS {Name} {Type}: {Decision}; answered NXDOMAIN")]
    public static partial void Denied(ILogger logger, string name, string type, string decision);

    [LoggerMessage(EventId = 330, Level = LogLevel.Information, Message = "DNS query not forwarded ({Reason}): {Action} ({HeldBack} more since the last such line)")]
    public static partial void MalformedQuery(ILogger logger, string reason, string action, long heldBack);

    [LoggerMessage(EventId = 303, Level = LogLevel.Debug, Message = "DNS query not forwarded ({Reason}): {Action}")]
    public static partial void NotForwarded(ILogger logger, string reason, string action);

    [LoggerMessage(EventId = 304, Level = LogLevel.Debug, Message = "answered DNS {Name} {Type}: rcode {Rcode}, {Length} bytes")]
    public static partial void Answered(ILogger logger, string name, string type, int rcode, int length);

    /// <summary>The line, with the count of lines held back by its rate limit when there were any (<see cref="HeldBackLines"/>).</summary>
    [LoggerMessage(EventId = 305, Level = LogLevel.Warning, Message = "SERVFAIL for DNS {Name} {Type}: {Status}{HeldBack:line}")]
    public static partial void QueryFailed(ILogger logger, string name, string type, string status, HeldBackLines heldBack);

    [LoggerMessage(EventId = 306, Level = LogLevel.Debug, Message = "DNS {Name}: {Length}-byte answer exceeds the client's UDP limit {Limit}; sent TC=1 so it retries over TCP")]
    public static partial void TruncatedForClient(ILogger logger, string name, int length, int limit);

    [LoggerMessage(EventId = 307, Level = LogLevel.Debug, Message = "learned {Address} for {Name}, TTL {TtlSeconds} s")]
    public static partial void Learned(ILogger logger, IPAddress address, string name, double ttlSeconds);

    [LoggerMessage(EventId = 308, Level = LogLevel.Warning, Message = "DNS rebinding refused: {Name} answered {Address}: {Result}")]
    public static partial void RebindingRefused(ILogger logger, string name, IPAddress address, LearnResult result);

    [LoggerMessage(EventId = 324, Level = LogLevel.Debug, Message = "DNS {Name} {Type}: {Count} internal-range address records removed from the answer (never learned), so the app tries only the addresses it may reach")]
    public static partial void InternalAddressesRemoved(ILogger logger, string name, string type, int count);

    [LoggerMessage(EventId = 325, Level = LogLevel.Warning, Message = "DNS {Name} {Type}: answered SERVFAIL (EDE Blocked): the answer holds internal-range address records and could not be rewritten without them (see docs/dns.md)")]
    public static partial void InternalAddressesRefusedAnswer(ILogger logger, string name, string type);

    [LoggerMessage(EventId = 329, Level = LogLevel.Warning, Message = "{Name} is no longer learned for {Address}, though still allowed: {By} took its place (at most {MaxNames} names per address; {Displaced} such since the last such line, at most one a minute). An app that kept the address for {Name} is denied it until it resolves the name again")]
    public static partial void NameDisplaced(ILogger logger, string name, System.Net.IPAddress address, string by, int maxNames, long displaced);

    [LoggerMessage(EventId = 326, Level = LogLevel.Warning, Message = "learned-address cache full ({MaxEntries} addresses): {Evicted} learned addresses evicted while still allowed since the last such line (at most one a minute); an app that kept one is denied it (egress-enclave: until the name is resolved again; egress-host re-learns it from the request's host hint). Raise [dns] cache_max_entries")]
    public static partial void CacheEvicted(ILogger logger, long evicted, int maxEntries);

    [LoggerMessage(EventId = 327, Level = LogLevel.Warning, Message = "dns forwarder not listening on {EndPoint}: IPv6 is unavailable here")]
    public static partial void IPv6Unavailable(ILogger logger, IPEndPoint endPoint);

    [LoggerMessage(EventId = 309, Level = LogLevel.Debug, Message = "DNS answer for {Name} not learned ({Error})")]
    public static partial void Unlearnable(ILogger logger, string name, DnsParseError error);

    /// <summary>Debug: a stream closes after 30 s without a query (event 322, Debug) and reopens on the next.</summary>
    [LoggerMessage(EventId = 310, Level = LogLevel.Debug, Message = "dns stream {Index} opened to {Tunnel}")]
    public static partial void StreamOpened(ILogger logger, int index, string tunnel);

    /// <summary>Event 311, with the count of lines held back by its rate limit when there were any (<see cref="HeldBackLines"/>).</summary>
    [LoggerMessage(EventId = 311, Level = LogLevel.Warning, Message = "dns stream {Index} to {Tunnel} refused ({Result}, {Status}: {Detail}){HeldBack:line}")]
    public static partial void StreamRefused(ILogger logger, int index, string tunnel, TunnelReadResult result, TunnelStatus status, string detail, HeldBackLines heldBack);

    /// <summary>Event 312, with the count of lines held back by its rate limit when there were any (<see cref="HeldBackLines"/>).</summary>
    [LoggerMessage(EventId = 312, Level = LogLevel.Warning, Message = "dns stream {Index}: tunnel {Tunnel} unavailable: {Error}{HeldBack:line}")]
    public static partial void StreamUnavailable(ILogger logger, int index, string tunnel, string error, HeldBackLines heldBack);

    [LoggerMessage(EventId = 313, Level = LogLevel.Warning, Message = "dns stream {Index} failed ({Reason}); {Pending} pending queries answered SERVFAIL")]
    public static partial void StreamFailed(ILogger logger, int index, string reason, int pending);

    [LoggerMessage(EventId = 314, Level = LogLevel.Warning, Message = "dns forwarder: {Listener} receive failed: {Error}")]
    public static partial void ReceiveFailed(ILogger logger, EndPoint listener, string error);

    [LoggerMessage(EventId = 315, Level = LogLevel.Error, Message = "dns forwarder: answering a query failed")]
    public static partial void HandlerFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 316, Level = LogLevel.Warning, Message = "dns forwarder: {InFlight} queries in flight; dropped a UDP query ({Suppressed} more since the last such line)")]
    public static partial void Overloaded(ILogger logger, int inFlight, long suppressed);

    [LoggerMessage(EventId = 318, Level = LogLevel.Warning, Message = "DNS query over UDP larger than {Limit} bytes not forwarded: {Action}")]
    public static partial void UdpQueryTooLarge(ILogger logger, int limit, string action);

    [LoggerMessage(EventId = 317, Level = LogLevel.Warning, Message = "DNS over TCP: the peer took no answer for {Seconds} s; closing the connection")]
    public static partial void PeerNotReading(ILogger logger, double seconds);

    [LoggerMessage(EventId = 328, Level = LogLevel.Warning, Message = "DNS over TCP: answers holding {Bytes} bytes wait while the peer takes nothing (at most {Limit}); closing the connection")]
    public static partial void TooMuchUnwritten(ILogger logger, int bytes, int limit);

    [LoggerMessage(EventId = 319, Level = LogLevel.Warning, Message = "DNS stream: a frame was not complete {Seconds} s after its first byte; closing the stream ({Suppressed} more since the last such line)")]
    public static partial void FrameTimedOut(ILogger logger, double seconds, long suppressed);

    [LoggerMessage(EventId = 320, Level = LogLevel.Debug, Message = "DNS stream idle for {Seconds} s; closing it")]
    public static partial void IdleClosed(ILogger logger, double seconds);

    [LoggerMessage(EventId = 321, Level = LogLevel.Warning, Message = "DNS query not forwarded: {Reason}; answered SERVFAIL with an Extended DNS Error ({Suppressed} more since the last such line)")]
    public static partial void QueryOverloaded(ILogger logger, string reason, long suppressed);

    [LoggerMessage(EventId = 323, Level = LogLevel.Debug, Message = "dns stream {Index} closed: the forwarder is stopping")]
    public static partial void StreamStopped(ILogger logger, int index);

    [LoggerMessage(EventId = 322, Level = LogLevel.Debug, Message = "dns stream {Index} idle for {Seconds} s; closed it (it reopens on the next query)")]
    public static partial void StreamIdleClosed(ILogger logger, int index, double seconds);
}
