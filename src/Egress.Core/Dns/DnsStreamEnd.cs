using System.Globalization;

namespace Egress.Dns;

/// <summary>Why <see cref="DnsFramedConnection"/> stopped serving a stream.</summary>
internal enum DnsStreamEndReason
{
    /// <summary>The peer closed the stream at a frame boundary (the enclave closes its streams after 30 s without a query).</summary>
    PeerClosed,

    /// <summary>No frame within <see cref="DnsStreamOptions.IdleTimeout"/>.</summary>
    Idle,

    /// <summary>The server is stopping (or aborted its streams).</summary>
    Stopping,

    /// <summary>The peer sent a zero-length frame.</summary>
    EmptyFrame,

    /// <summary>The peer closed the stream in the middle of a frame.</summary>
    Truncated,

    /// <summary>A frame was not complete <see cref="DnsStreamOptions.FrameTimeout"/> after its first byte.</summary>
    FrameTimeout,

    /// <summary>The peer took no answer for <see cref="DnsFramedConnection.WriteTimeout"/>, or let more than
    /// <see cref="DnsFramedConnection.MaxUnwrittenBytes"/> of answers wait.</summary>
    PeerNotReading,

    /// <summary>The stream was reset or a read failed (<see cref="DnsStreamEnd.Error"/> says how).</summary>
    Failed,

    /// <summary>Closed by the parent at the DNS stream limit, for a new stream to take its place (<see cref="DnsStreamSlots"/>).</summary>
    GivenUp,
}

/// <summary>How a stream served by <see cref="DnsFramedConnection"/> ended: the reason, and the error's message when it failed.</summary>
/// <param name="Reason">Why it ended.</param>
/// <param name="Error">The error's message (<see cref="DnsStreamEndReason.Failed"/>).</param>
internal readonly record struct DnsStreamEnd(DnsStreamEndReason Reason, string? Error = null)
{
    /// <summary>Gets whether this is an ordinary end (the peer closed it, it stayed idle, a stop), logged at Debug only.</summary>
    public bool IsNormal => Reason is DnsStreamEndReason.PeerClosed or DnsStreamEndReason.Idle or DnsStreamEndReason.Stopping
        or DnsStreamEndReason.GivenUp; // said once per limit line instead (event 218)

    /// <summary>The reason in words, naming the peer (e.g. "the enclave").</summary>
    /// <param name="peer">Who is at the other end.</param>
    /// <param name="options">The stream's bounds (its idle and frame timeouts).</param>
    /// <returns>E.g. "closed by the enclave", "idle for 60 s", "reset or failed (Connection reset by peer)".</returns>
    public string Text(string peer, DnsStreamOptions options) => Reason switch
    {
        DnsStreamEndReason.PeerClosed => $"closed by {peer}",
        DnsStreamEndReason.Idle => string.Create(CultureInfo.InvariantCulture, $"idle for {options.IdleTimeout.TotalSeconds:0.###} s"),
        DnsStreamEndReason.Stopping => "stopping",
        DnsStreamEndReason.EmptyFrame => $"{peer} sent an empty frame",
        DnsStreamEndReason.Truncated => $"{peer} closed it in the middle of a frame",
        DnsStreamEndReason.FrameTimeout => string.Create(CultureInfo.InvariantCulture, $"a frame was not complete {options.FrameTimeout.TotalSeconds:0.###} s after its first byte"),
        DnsStreamEndReason.GivenUp => "closed at the DNS stream limit for a new stream",
        DnsStreamEndReason.PeerNotReading => string.Create(CultureInfo.InvariantCulture, $"{peer} did not read its answers (none taken for {DnsFramedConnection.WriteTimeout.TotalSeconds:0.###} s, or more than {DnsFramedConnection.MaxUnwrittenBytes / 1024} KiB waiting)"),
        _ => $"reset or failed ({Error})",
    };
}
