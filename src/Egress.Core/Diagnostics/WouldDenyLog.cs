using System.Net;
using Egress.Policy;
using Microsoft.Extensions.Logging;

namespace Egress.Diagnostics;

/// <summary>
/// The would-deny lines of <see cref="EgressMode.Report"/>, logged and counted by both hosts at each decision point
/// (a redirected connection, a tunnel stream, a DNS question) whose decision has <see cref="PolicyDecision.WouldDeny"/>.
/// Their text is what <see cref="Policy.ReportedDestinations"/> reads back into <c>destinations</c> entries:
/// <c>report mode: would deny connection to 203.0.113.7:443 (name app.example.com): never learned from an allowed name; allowed</c>
/// and <c>report mode: would deny DNS app.example.com A: name not in allowlist; answered NOERROR</c> (logged when the
/// query is answered, with what it was answered: <c>answered NXDOMAIN</c> for a name that does not exist).
/// </summary>
internal static partial class WouldDenyLog
{
    /// <summary>The text every would-deny line starts with.</summary>
    public const string Prefix = "report mode: would deny ";

    [LoggerMessage(EventId = 460, Level = LogLevel.Warning, Message = Prefix + "connection to {Destination}{Name}: {Reason}; allowed")]
    private static partial void ConnectionLine(ILogger logger, IPEndPoint destination, string name, string reason);

    [LoggerMessage(EventId = 461, Level = LogLevel.Warning, Message = Prefix + "DNS {Name} {Type}: {Reason}; {Action}")]
    private static partial void QuestionLine(ILogger logger, string name, string type, string reason, string action);

    /// <summary>Logs and counts a connection that report mode allowed; nothing when <paramref name="decision"/> is not a would-deny.</summary>
    /// <param name="logger">The host's logger.</param>
    /// <param name="metrics">Where it is counted; null for nowhere.</param>
    /// <param name="destination">The original destination.</param>
    /// <param name="name">The name the destination was asked for (a host hint), when known; else the name
    /// <paramref name="decision"/> went by (<see cref="EgressPolicy.LearnedNameOf"/>), if any.</param>
    /// <param name="policy">The policy that decided.</param>
    /// <param name="decision">The decision.</param>
    public static void Connection(ILogger logger, EgressMetrics? metrics, IPEndPoint destination, string? name, EgressPolicy policy, PolicyDecision decision)
    {
        if (!decision.WouldDeny)
        {
            return;
        }

        name ??= policy.LearnedNameOf(destination.Address, decision);
        metrics?.WouldDeny("connection", decision.Reason);
        if (logger.IsEnabled(LogLevel.Warning))
        {
            ConnectionLine(logger, destination, name is null ? string.Empty : $" (name {name.TrimEnd('.')})", decision.Denial);
        }
    }

    /// <summary>Logs and counts a DNS question that report mode resolved; nothing when <paramref name="decision"/> is not a would-deny.</summary>
    /// <param name="logger">The host's logger.</param>
    /// <param name="metrics">Where it is counted; null for nowhere.</param>
    /// <param name="name">The question name.</param>
    /// <param name="type">The question type, e.g. <c>A</c>.</param>
    /// <param name="decision">The decision.</param>
    /// <param name="action">What the query was answered once forwarded, e.g. <c>answered NXDOMAIN</c>
    /// (<see cref="Dns.DnsQueryResult.Action"/>).</param>
    public static void Question(ILogger logger, EgressMetrics? metrics, string name, string type, PolicyDecision decision, string action)
    {
        if (!decision.WouldDeny)
        {
            return;
        }

        metrics?.WouldDeny("dns", decision.Reason);
        if (logger.IsEnabled(LogLevel.Warning))
        {
            string shown = name.TrimEnd('.');
            QuestionLine(logger, shown.Length == 0 ? "." : shown, type, decision.Denial, action); // the root as "." (its name is empty)
        }
    }
}
