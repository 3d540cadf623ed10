using Microsoft.Extensions.Logging;

namespace Egress.Denials;

/// <summary>egress-enclave's lines about its denial reports (docs/tunnel-protocol.md, "Denial reports").</summary>
internal static partial class DenialLog
{
    [LoggerMessage(EventId = 132, Level = LogLevel.Warning, Message = "denial reports: the parent at {Tunnel} does not take them (an egress-host older than this egress-enclave answered UnsupportedKind); what this enclave denies stays in its own log, and {Denials} denials of this report were not sent; asking again in {Minutes} min")]
    public static partial void Unsupported(ILogger logger, string tunnel, long denials, double minutes);

    [LoggerMessage(EventId = 133, Level = LogLevel.Information, Message = "denial reports: the parent at {Tunnel} takes them again")]
    public static partial void SupportedAgain(ILogger logger, string tunnel);

    [LoggerMessage(EventId = 134, Level = LogLevel.Debug, Message = "denial report not delivered to {Tunnel} ({Reason}); its {Denials} denials go in the next report")]
    public static partial void NotDelivered(ILogger logger, string tunnel, string reason, long denials);

    [LoggerMessage(EventId = 135, Level = LogLevel.Debug, Message = "denial report delivered to {Tunnel}: {Records} records, {Denials} denials over {Seconds} s")]
    public static partial void Delivered(ILogger logger, string tunnel, int records, long denials, int seconds);

    [LoggerMessage(EventId = 136, Level = LogLevel.Debug, Message = "denial report delivered to {Tunnel}: no denials, the policy digest {Digest} only")]
    public static partial void PolicyDelivered(ILogger logger, string tunnel, string digest);
}
