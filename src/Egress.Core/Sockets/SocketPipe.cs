using System.IO.Pipelines;
using System.Net.Sockets;
using Pipelines.Sockets.Unofficial;

namespace Egress.Sockets;

/// <summary>
/// A connected stream socket (TCP, Unix or VSOCK) as a duplex pipe (System.IO.Pipelines): the one I/O model of the
/// relay and of every DNS stream (client DNS-over-TCP connections, tunnel DNS streams on both sides, TCP to the
/// upstream resolvers).
/// </summary>
internal static class SocketPipe
{
    /// <summary>Pause a producer once this many bytes wait unread in one direction of one connection.</summary>
    public const long PauseWriterThreshold = 1024 * 1024;

    /// <summary>Resume a paused producer once the unread bytes drop below this.</summary>
    public const long ResumeWriterThreshold = 512 * 1024;

    /// <summary>Segment size, which is also the size of one socket receive.</summary>
    public const int MinimumSegmentSize = 64 * 1024;

    /// <summary>The options used for both the send and the receive pipe of every connection.</summary>
    public static PipeOptions Options { get; } = new(
        pool: null,
        readerScheduler: PipeScheduler.ThreadPool,
        writerScheduler: PipeScheduler.ThreadPool,
        pauseWriterThreshold: PauseWriterThreshold,
        resumeWriterThreshold: ResumeWriterThreshold,
        minimumSegmentSize: MinimumSegmentSize,
        useSynchronizationContext: false);

    /// <summary>Wraps a connected stream socket in a pipe pair.</summary>
    /// <remarks>
    /// 64 KiB segments (one socket receive each); at most about 1 MiB buffered per pipe before the producer pauses
    /// (resuming below 512 KiB). Zero-length reads are on where the socket can say how many bytes are queued
    /// (FIONREAD, which the zero-length read path asks after each wake-up), so an idle connection waits without
    /// renting a receive buffer. AF_VSOCK answers FIONREAD with EOPNOTSUPP on kernels without SIOCINQ support for
    /// VSOCK, a recent addition (the VM suite's Linux 6.1 among them): there every read waits with a rented buffer.
    /// </remarks>
    /// <param name="socket">A connected stream socket; the connection takes ownership of it.</param>
    /// <returns>The connection; close it with <see cref="CloseAsync"/> (or <see cref="SocketReset.Reset"/> its socket on errors).</returns>
    public static SocketConnection Create(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        return SocketConnection.Create(socket, Options, Options, ReadOptionsFor(socket));
    }

    /// <summary>
    /// Zero-length reads where FIONREAD works on the socket (<see cref="Socket.Available"/> does not throw), none
    /// where it fails (AF_VSOCK on Linux 6.1: EOPNOTSUPP).
    /// </summary>
    /// <param name="socket">The socket to probe.</param>
    /// <returns>The receive options for <see cref="SocketConnection.Create(Socket, PipeOptions, PipeOptions, SocketConnectionOptions, string)"/>.</returns>
    public static SocketConnectionOptions ReadOptionsFor(Socket socket)
    {
        try
        {
            _ = socket.Available;
            return SocketConnectionOptions.ZeroLengthReads;
        }
        catch (SocketException)
        {
            return SocketConnectionOptions.None;
        }
    }

    /// <summary>
    /// Completes the connection's output, waits until its send loop has written every buffered byte to the socket
    /// and shut the send side down, then disposes the connection. Disposing earlier would drop the unsent tail.
    /// </summary>
    /// <param name="connection">The connection to close.</param>
    /// <param name="cancellationToken">Stops waiting (e.g. a peer that never reads); the connection is disposed regardless.</param>
    /// <returns>A task that completes when the connection is disposed.</returns>
    public static async ValueTask CloseAsync(SocketConnection connection, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var sent = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
#pragma warning disable CS0618 // Obsolete, but System.IO.Pipelines.Pipe (which SocketConnection sends from) still raises it; it is the only signal that the send loop ended.
        connection.Output.OnReaderCompleted(static (_, state) => ((TaskCompletionSource)state!).TrySetResult(), sent);
#pragma warning restore CS0618
        try
        {
            connection.Output.Complete();
            await sent.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Give up on the tail; fall through to dispose.
        }
        finally
        {
            connection.Dispose();
        }
    }
}
