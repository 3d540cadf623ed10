namespace Egress.Dns.Forwarder;

/// <summary>How a query sent through a tunnel DNS stream ended.</summary>
internal enum DnsExchangeStatus
{
    /// <summary>The parent answered; the response is in the query's response buffer.</summary>
    Answered,

    /// <summary>No answer within the query timeout.</summary>
    TimedOut,

    /// <summary>The stream failed (or could not be opened) before the answer came.</summary>
    StreamFailed,

    /// <summary>The forwarder is stopping.</summary>
    Stopped,
}

/// <summary>The words a SERVFAIL's log line gives for a <see cref="DnsExchangeStatus"/>, ending with its name.</summary>
internal static class DnsExchangeStatusText
{
    private static readonly string TimedOut = $"no answer through the tunnel within {Configuration.ConfigurationKeys.EnclaveDnsQueryTimeout.Path} (TimedOut)";

    public static string Of(DnsExchangeStatus status) => status switch
    {
        DnsExchangeStatus.TimedOut => TimedOut,
        DnsExchangeStatus.StreamFailed => "the tunnel DNS stream to the parent failed or could not be opened; a \"dns stream\" line says why (StreamFailed)",
        DnsExchangeStatus.Stopped => "the DNS forwarder is stopping (Stopped)",
        _ => status.ToString(),
    };
}
