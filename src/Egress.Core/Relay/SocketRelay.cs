using System.Net.Sockets;

namespace Egress.Relay;

/// <summary>
/// Copies bytes both ways between two connected stream sockets, with exact half-close, reset-on-error and an idle
/// timeout. This is the relay for socket-to-socket paths (the proxy's and the gateway's TCP streams): one loop per
/// direction moves each chunk straight from one socket to the other, through a kernel pipe (splice) or one buffer.
/// </summary>
/// <remarks>
/// Use <see cref="DuplexRelay"/> instead when a side is not a plain socket (a pipe, a framed protocol, a test double).
/// </remarks>
public static class SocketRelay
{
    /// <summary>Copies <paramref name="a"/> to <paramref name="b"/> and <paramref name="b"/> to <paramref name="a"/> until both directions have finished.</summary>
    /// <inheritdoc cref="RunAsync(Socket, Socket, ReadOnlyMemory{byte}, ReadOnlyMemory{byte}, RelayOptions, CancellationToken)"/>
    public static Task<RelayResult> RunAsync(Socket a, Socket b, RelayOptions options, CancellationToken cancellationToken) =>
        RunAsync(a, b, ReadOnlyMemory<byte>.Empty, ReadOnlyMemory<byte>.Empty, options, cancellationToken);

    /// <summary>
    /// Copies <paramref name="a"/> to <paramref name="b"/> and <paramref name="b"/> to <paramref name="a"/> until both
    /// directions have finished, first sending bytes that the caller already read from either side.
    /// </summary>
    /// <remarks>
    /// <para>An idle direction waits with a zero-byte receive and holds no buffer; a buffer is rented from the shared
    /// array pool while data flows and returned when the direction goes idle again.</para>
    /// <para>With <see cref="RelayOptions.UseSplice"/> (the default, on Linux) bytes move socket to socket through a
    /// kernel pipe with splice(2) and never enter the process, except the first few KiB after a direction wakes up (small
    /// messages are cheaper to copy) and the head of a burst whose destination is full. Both sockets are switched to
    /// non-blocking mode (<see cref="Socket.Blocking"/>) for this.</para>
    /// <para>End of stream on one socket shuts down the other socket's send side (FIN) while the opposite direction
    /// keeps flowing. A receive or send error, the idle timeout or cancellation resets both sockets (RST, not FIN) so
    /// no TCP peer mistakes an abort for a clean end. A Unix socket has no reset: its peer reads end of stream, which is
    /// why the tunnel's version 2 carries each direction's end, clean or not, in a frame of its own
    /// (docs/tunnel-protocol.md).</para>
    /// <para>The method does not throw for I/O failures; they are reported in the result. Every byte counted in the
    /// result has been accepted by the receiving socket's kernel buffer when the method returns. The caller still
    /// owns both sockets and disposes them afterwards (after a reset they are already closed).</para>
    /// </remarks>
    /// <param name="a">One side, e.g. the application's socket or the tunnel stream.</param>
    /// <param name="b">The other side.</param>
    /// <param name="readFromA">Bytes already read from <paramref name="a"/>: sent to <paramref name="b"/> before anything else, and counted.</param>
    /// <param name="readFromB">Bytes already read from <paramref name="b"/>: sent to <paramref name="a"/> before anything else, and counted.</param>
    /// <param name="options">Idle timeout and clock.</param>
    /// <param name="cancellationToken">Aborts the relay with <see cref="RelayShutdownCause.Cancelled"/>.</param>
    /// <returns>Byte counts, the first cause and the duration.</returns>
    /// <exception cref="ArgumentNullException">A side or <paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="options"/>' idle timeout is zero, negative or above
    /// int.MaxValue ms (null and <see cref="Timeout.InfiniteTimeSpan"/> mean none), or its half-closed timeout likewise;
    /// thrown before the relay starts.</exception>
    /// <exception cref="ArgumentException"><paramref name="options"/> has no <see cref="RelayOptions.TimeProvider"/>, or
    /// <paramref name="a"/> and <paramref name="b"/> are the same socket (nothing would ever end the relay).</exception>
    public static Task<RelayResult> RunAsync(
        Socket a, Socket b, ReadOnlyMemory<byte> readFromA, ReadOnlyMemory<byte> readFromB, RelayOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(options);
        if (ReferenceEquals(a, b))
        {
            throw new ArgumentException("a relay joins two sockets: a and b are the same one", nameof(b));
        }

        return new SocketRelaySession(a, b, options).RunAsync(readFromA, readFromB, cancellationToken);
    }

    /// <summary>
    /// The relay of a version 2 tunnel stream: side <paramref name="framed"/> is the tunnel, which carries DATA frames
    /// and one END frame per direction (docs/tunnel-protocol.md); the other side is the plain socket (application or
    /// destination). An END(FIN) half-closes the plain socket, any other END cause, or a tunnel that ends without END,
    /// resets it; a plain socket's reset or error is sent as END(RST) or END(Error). The result's
    /// <see cref="RelayResult.Framed"/> says whether both directions ended with FIN.
    /// </summary>
    /// <param name="a">Side A.</param>
    /// <param name="b">Side B.</param>
    /// <param name="framed">Which side is the tunnel.</param>
    /// <param name="readFromA">Bytes already read from <paramref name="a"/> (frames if it is the tunnel).</param>
    /// <param name="readFromB">Bytes already read from <paramref name="b"/> (frames if it is the tunnel).</param>
    /// <param name="options">Idle timeout, clock, splicing.</param>
    /// <param name="gate">Reads the application's first bytes before any is forwarded (the TLS server-name check); null: none.</param>
    /// <param name="cancellationToken">Aborts the relay (END(Stopping)) with <see cref="RelayShutdownCause.Cancelled"/>.</param>
    /// <param name="alreadyNonBlocking">The sockets the caller already made non-blocking: a splicing relay leaves their mode alone.</param>
    /// <param name="forwardedFromA">Bytes of <paramref name="a"/> already sent to the tunnel (B) with the request: counted, not sent again.</param>
    /// <returns>Payload byte counts, the first cause, the duration and the END frames.</returns>
    internal static Task<RelayResult> RunFramedAsync(
        Socket a, Socket b, RelaySide framed, ReadOnlyMemory<byte> readFromA, ReadOnlyMemory<byte> readFromB, RelayOptions options, IFirstBytesGate? gate,
        CancellationToken cancellationToken, NonBlockingSides alreadyNonBlocking = NonBlockingSides.None, ForwardedEarly forwardedFromA = default)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(options);
        return new SocketRelaySession(a, b, framed, options, alreadyNonBlocking) { ForwardedFromA = forwardedFromA }.RunAsync(readFromA, readFromB, cancellationToken, gate);
    }

    /// <summary>As <see cref="RunAsync(Socket, Socket, ReadOnlyMemory{byte}, ReadOnlyMemory{byte}, RelayOptions, CancellationToken)"/>,
    /// with <paramref name="gate"/> reading A's first bytes before A to B starts (B to A starts at once); a refusal ends
    /// the relay with <see cref="RelayShutdownCause.Refused"/>, both sockets reset.</summary>
    internal static Task<RelayResult> RunAsync(
        Socket a, Socket b, ReadOnlyMemory<byte> readFromA, ReadOnlyMemory<byte> readFromB, RelayOptions options, IFirstBytesGate? gate, CancellationToken cancellationToken) =>
        new SocketRelaySession(a, b, options).RunAsync(readFromA, readFromB, cancellationToken, gate);
}
