namespace Egress.Dns.Wire;

/// <summary>The outcome of reading one length-prefixed DNS message from a stream.</summary>
internal enum DnsFrameResult
{
    /// <summary>A whole message was read.</summary>
    Complete,

    /// <summary>More bytes are needed.</summary>
    Incomplete,

    /// <summary>The frame declares a length of 0, which no DNS message has; the stream should be closed.</summary>
    Empty,

    /// <summary>The frame declares a length above the reader's limit; the stream should be closed.</summary>
    TooLarge,
}
