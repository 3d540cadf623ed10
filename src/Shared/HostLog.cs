using Egress.Configuration;
using Microsoft.Extensions.Logging;

namespace Egress.Hosting;

/// <summary>The lines both hosts log themselves (the components log the rest).</summary>
internal static partial class HostLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "starting {Version}")]
    public static partial void Starting(ILogger logger, string version);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "policy {Digest} (egress {Egress}, {Destinations}); the enclave and the parent must log the same")]
    public static partial void Policy(ILogger logger, string digest, string egress, string destinations);

    /// <summary>Written in place of <see cref="Policy(ILogger, PolicyDigest)"/> by egress-host with <c>[[host.enclaves]]</c>,
    /// where every stream is decided by its entry's file and the gateway logs each entry's digest
    /// (<c>enclave CID 16: policy sha256:… (egress enabled, 2 destinations) from a.toml</c>).</summary>
    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "policy per enclave ([[host.enclaves]]): each \"enclave ...: policy ...\" line below is what that enclave must log; this file's own [egress] decides no stream")]
    public static partial void PolicyPerEnclave(ILogger logger);

    /// <summary>Written by egress-enclave at start where its network namespace has interfaces besides <c>lo</c>: a
    /// trial on a development machine or in a container, not an enclave, whose apps can reach the network around
    /// the proxy with what the redirect rules do not catch.</summary>
    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "this network namespace has interfaces other than lo ({Interfaces}); a Nitro enclave has none. Here the redirect rules are no boundary: what they do not redirect (traffic other than TCP and DNS, and everything where they are not applied) can leave through those interfaces. Fine for a trial; in production only lo exists")]
    public static partial void NotEnclaveShaped(ILogger logger, string interfaces);

    /// <summary>Written when a stop begins (<c>IHostApplicationLifetime.ApplicationStopping</c>).</summary>
    [LoggerMessage(EventId = 6, Level = LogLevel.Information, Message = "stopping: a stop was asked for (SIGTERM, SIGINT or SIGQUIT); accepting no more")]
    public static partial void Stopping(ILogger logger);

    [LoggerMessage(EventId = 9, Level = LogLevel.Warning, Message = "SIGHUP ignored: this host does not reload its configuration; restart it to apply a change (SIGTERM stops it after the drain)")]
    public static partial void HangupIgnored(ILogger logger);

    [LoggerMessage(EventId = 7, Level = LogLevel.Information, Message = "stopped")]
    public static partial void Stopped(ILogger logger);

    [LoggerMessage(EventId = 8, Level = LogLevel.Information, Message = "metrics served at {Url} (Prometheus text format; no authentication)")]
    public static partial void MetricsServed(ILogger logger, string url);

    /// <summary>Written in place of lines dropped because stdout was read more slowly than they came, or whose write
    /// failed (<see cref="LogBatchWriter"/>); at any <c>--log-level</c>, since it is not logged through the filters.</summary>
    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "{Count} " + global::Egress.Diagnostics.DroppedLogLines.Text + ": stdout was read more slowly than lines came (connections were not held up)")]
    public static partial void LinesDropped(ILogger logger, long count);

    /// <summary>The policy digest with what it covers, as the log line and <c>egress-enclave check</c> show it:
    /// <c>sha256:1a2b3c4d5e6f (egress enabled, 3 destinations)</c>.</summary>
    public static string Describe(PolicyDigest digest) => $"{digest} (egress {Egress(digest)}, {Destinations(digest)})";

    /// <summary>Logs the policy digest (<see cref="PolicyDigest"/>).</summary>
    public static void Policy(ILogger logger, PolicyDigest digest) => Policy(logger, digest.ToString(), Egress(digest), Destinations(digest));

    private static string Egress(PolicyDigest digest) =>
        !digest.EgressEnabled ? "disabled" : digest.Mode == global::Egress.Policy.EgressMode.Report ? "enabled, report mode: denials are only logged" : "enabled";

    private static string Destinations(PolicyDigest digest) =>
        digest.DestinationCount == 1 ? "1 destination" : $"{digest.DestinationCount} destinations";
}
