using System.IO.Pipelines;

namespace Egress.Relay;

/// <summary>Copies bytes both ways between two duplex pipes, with exact half-close, abort-on-error and an idle timeout.</summary>
/// <remarks>
/// For two plain connected sockets use <see cref="SocketRelay"/>: it copies socket to socket with one copy per chunk and
/// no pipes (the proxy's and the gateway's TCP streams use it). Use this relay when a side is a pipe: a framed or
/// transformed stream, an in-memory peer, or a socket wrapped as pipes with Pipelines.Sockets.Unofficial's
/// <c>SocketConnection.Create</c>.
/// </remarks>
public static class DuplexRelay
{
    /// <summary>
    /// Copies <paramref name="a"/>.Input to <paramref name="b"/>.Output and <paramref name="b"/>.Input to
    /// <paramref name="a"/>.Output concurrently until both directions have finished.
    /// </summary>
    /// <remarks>
    /// <para>End of stream on one input completes the opposite output without an error (for a socket connection: drain,
    /// then shutdown of the send side) while the other direction keeps flowing.</para>
    /// <para>A read or write error, the idle timeout or cancellation aborts the relay: a side that is a
    /// <see cref="Pipelines.Sockets.Unofficial.SocketConnection"/> is reset (RST, not FIN) first, then every pipe end
    /// that is still open is completed with the error, so no peer mistakes an abort for a clean end.</para>
    /// <para>The method does not throw for I/O failures; they are reported in the result. The caller still owns both
    /// pipes (a <see cref="Pipelines.Sockets.Unofficial.SocketConnection"/>: dispose it, then its socket).</para>
    /// </remarks>
    /// <param name="a">One side, e.g. the application's socket or the tunnel stream.</param>
    /// <param name="b">The other side.</param>
    /// <param name="options">Idle timeout and clock.</param>
    /// <param name="cancellationToken">Aborts the relay with <see cref="RelayShutdownCause.Cancelled"/>.</param>
    /// <returns>Byte counts, the first cause and the duration.</returns>
    /// <exception cref="ArgumentNullException">A side or <paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="options"/>' idle timeout is zero, negative or above
    /// int.MaxValue ms (null and <see cref="Timeout.InfiniteTimeSpan"/> mean none), or its half-closed timeout likewise;
    /// thrown before the relay starts.</exception>
    /// <exception cref="ArgumentException"><paramref name="options"/> has no <see cref="RelayOptions.TimeProvider"/>, or
    /// <paramref name="a"/> and <paramref name="b"/> are the same pipe (nothing would ever end the relay).</exception>
    public static Task<RelayResult> RunAsync(IDuplexPipe a, IDuplexPipe b, RelayOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(options);
        if (ReferenceEquals(a, b))
        {
            throw new ArgumentException("a relay joins two pipes: a and b are the same one", nameof(b));
        }

        return new RelaySession(a, b, options).RunAsync(cancellationToken);
    }
}
