using Microsoft.Extensions.Logging;

namespace Egress.Hosting;

/// <summary>The lines both hosts log themselves (the components log the rest).</summary>
internal static partial class HostLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "starting {Version}")]
    public static partial void Starting(ILogger logger, string version);
}
