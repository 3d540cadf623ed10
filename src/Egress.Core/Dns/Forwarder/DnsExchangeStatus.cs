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
