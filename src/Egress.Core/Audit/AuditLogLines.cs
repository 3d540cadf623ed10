using Microsoft.Extensions.Logging;

namespace Egress.Audit;

/// <summary>The audit log's own log lines (events 600–609).</summary>
internal static partial class AuditLogLines
{
    [LoggerMessage(EventId = 600, Level = LogLevel.Information, Message = "audit: one JSON line per connection to {Target}")]
    public static partial void Opened(ILogger logger, string target);

    [LoggerMessage(EventId = 601, Level = LogLevel.Warning, Message = "audit: {Dropped} records dropped so far: more than {Capacity} waiting to be written to {Target}")]
    public static partial void Dropped(ILogger logger, string target, long dropped, int capacity);

    [LoggerMessage(EventId = 602, Level = LogLevel.Error, Message = "audit: writing to {Target} failed ({Error}); later records are dropped and counted")]
    public static partial void WriteFailed(ILogger logger, string target, string error);
}
