using Egress.Diagnostics;

namespace Egress.Dns;

/// <summary>
/// The bounds of one kind of DNS stream served by <see cref="DnsFramedConnection"/> (a client's DNS-over-TCP
/// connection to the enclave, or a tunnel DNS stream on the parent): how many of its queries are answered at once,
/// what happens to a query beyond that, how long it may stay idle, and how long one frame may take to arrive once
/// its first byte has. One instance per service: it also holds the service's log rate limits.
/// </summary>
internal sealed class DnsStreamOptions
{
    /// <summary>How long a frame may take from its first byte to its last: a DNS message is sent whole, in one or a
    /// few segments, so even 64 KiB arrives in milliseconds; a peer that trickles bytes is holding the stream.</summary>
    public static readonly TimeSpan DefaultFrameTimeout = TimeSpan.FromSeconds(5);

    private LogRateLimit? _frameTimeouts;

    /// <summary>Gets the most queries of one stream answered at once (at least 1).</summary>
    public required int MaxInFlight { get; init; }

    /// <summary>
    /// Gets whether a query beyond <see cref="MaxInFlight"/> is answered SERVFAIL at once (with an Extended DNS Error,
    /// see <see cref="IDnsAnswerer.AnswerOverloaded"/>) and reading goes on (true: the parent's tunnel DNS streams,
    /// which must never queue a query behind others: a queued query's client may have given up long before it is
    /// read), or whether reading waits for a place (false: a client's own DNS-over-TCP connection, RFC 7766 flow
    /// control).
    /// </summary>
    public bool AnswerOverflow { get; init; }

    /// <summary>
    /// Gets the bound on queries being answered over all streams of the service together (each holds a 64 KiB answer
    /// buffer while its answer is computed; the place goes back once it is, and an answer waiting to be written is
    /// charged to its stream, <see cref="DnsFramedConnection.MaxUnwrittenBytes"/>), or null for none. A query beyond it
    /// is answered like one beyond <see cref="MaxInFlight"/> (only with <see cref="AnswerOverflow"/>).
    /// </summary>
    public DnsInFlightLimit? SharedLimit { get; init; }

    /// <summary>
    /// Gets how many queries in flight on each stream take no place in <see cref="SharedLimit"/> (0: none): the stream's
    /// first ones, so that streams which fill the shared places (slow answers asked for on many streams) leave every
    /// other stream these few. Each holds its query and an answer buffer (at most 64 KiB each) while its answer is
    /// computed, outside the shared bound.
    /// </summary>
    public int ReservedPerStream { get; init; }

    /// <summary>Gets how long to wait for the first byte of a frame; <see cref="Timeout.InfiniteTimeSpan"/> for ever.</summary>
    public TimeSpan IdleTimeout { get; init; } = Timeout.InfiniteTimeSpan;

    /// <summary>Gets how long a frame may take from its first byte to its last (<see cref="DefaultFrameTimeout"/>).</summary>
    public TimeSpan FrameTimeout { get; init; } = DefaultFrameTimeout;

    /// <summary>Gets the clock of the timeouts.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Gets where streams closed for a slow frame are counted (<c>egress.connections</c>, outcome
    /// <c>failed</c>, reason <c>dns_frame_timeout</c>); null records nothing.</summary>
    public Diagnostics.EgressMetrics? Metrics { get; init; }

    /// <summary>Gets the rate limit of the "frame not completed" line (event 319), whose summary goes to
    /// <paramref name="logger"/> (the first caller's: every stream of a service logs to the same category).</summary>
    internal LogRateLimit FrameTimeouts(Microsoft.Extensions.Logging.ILogger logger) =>
        _frameTimeouts ??= new LogRateLimit(TimeProvider, LogRateLimit.DefaultInterval, logger, 319);
}
