namespace Egress.Relay;

/// <summary>The outcome of one relay: bytes moved each way, why it ended and how long it ran.</summary>
/// <param name="BytesAToB">Bytes read from side A and handed to side B's output (for a socket: taken by its send buffer;
/// on a tunnel v2 stream, DATA payload only). After an abort, what went out before it is counted, up to one send that
/// was waiting when the abort came (at most 8 KiB when splicing, 64 KiB when copying), which may have moved bytes not
/// counted.</param>
/// <param name="BytesBToA">Bytes read from side B and handed to side A's output, counted as <paramref name="BytesAToB"/>.</param>
/// <param name="FirstCause">The first terminal event; <see cref="RelayShutdownCause.BothCompleted"/> when both sides ended cleanly.</param>
/// <param name="Error">The first read or write exception seen, even if it was not the first cause; <see langword="null"/> when none occurred.</param>
/// <param name="Duration">Time from the start of the relay until both directions finished.</param>
public sealed record RelayResult(long BytesAToB, long BytesBToA, RelayShutdownCause FirstCause, Exception? Error, TimeSpan Duration)
{
    /// <summary>The END frames of a version 2 tunnel stream (null for an unframed relay): whether the stream ended clean.</summary>
    internal FramedStreamEnd? Framed { get; init; }

    /// <summary>
    /// Bytes the framed relay read from the tunnel after the END frame, in the same receive (empty almost always): the
    /// start of whatever the stream carries next, so that a stream kept for another request loses nothing.
    /// </summary>
    internal ReadOnlyMemory<byte> TunnelAfterEnd { get; init; }

    /// <summary>The tunnel's connection id (version 2 streams; 0 otherwise), for the hosts' log lines.</summary>
    internal ulong ConnectionId { get; init; }
}
