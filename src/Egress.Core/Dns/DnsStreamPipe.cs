using System.IO.Pipelines;
using System.Net.Sockets;
using Egress.Sockets;

namespace Egress.Dns;

/// <summary>
/// A tunnel DNS stream's socket as a duplex pipe that never waits for the .NET thread pool: a thread of its own
/// waits in poll(2) and receives with reads that then return at once, and hands each read to <see cref="Input"/>, whose reader then runs inline on that
/// thread (the frame reader, the pending query's completion, the client's answer); <see cref="Output"/> sends on
/// the flushing thread. Connection floods queue thousands of continuations on the pool's FIFO queue (stress suite
/// scenario 1: 558 ms for the victim's queries against 8.6 ms unloaded); DNS handed through this pipe overtakes them.
/// Used only for tunnel DNS streams (a few on the enclave, at most <see cref="DnsStreamLimits.MaxStreams"/> per
/// enclave on the parent): a <see cref="DnsThread"/> each, up to <see cref="MaxThreads"/> in the process; a stream
/// beyond receives on the thread pool instead (its reader still runs inline where a receive completes), so a peer that
/// opens hundreds of DNS streams cannot make the process start hundreds of threads. A read that fails or returns 0
/// completes <see cref="Input"/> (with the error, for the reader to catch), and the receive loop ends.
/// </summary>
internal sealed class DnsStreamPipe : IDuplexPipe, IDisposable
{
    /// <summary>The most streams receiving on threads of their own at once, in the process.</summary>
    public const int MaxThreads = 64;

    /// <summary>How long one poll(2) of the receive thread waits before it looks whether the pipe was disposed (1 s).</summary>
    private const int PollTimeoutMicroseconds = 1_000_000;

    private static int s_threads;

    private static readonly PipeOptions InputOptions = new(
        pool: null,
        readerScheduler: PipeScheduler.Inline,
        writerScheduler: PipeScheduler.Inline,
        pauseWriterThreshold: SocketPipe.PauseWriterThreshold,
        resumeWriterThreshold: SocketPipe.ResumeWriterThreshold,
        minimumSegmentSize: 4096,
        useSynchronizationContext: false);

    private readonly Pipe _input = new(InputOptions);
    private readonly NetworkStream _stream;
    private int _disposed;

    private DnsStreamPipe(Socket socket)
    {
        Socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
        Output = PipeWriter.Create(_stream, new StreamPipeWriterOptions(minimumBufferSize: 4096, leaveOpen: true));
    }

    /// <summary>Gets the streams receiving on threads of their own now, in the process.</summary>
    public static int Threads => Volatile.Read(ref s_threads);

    /// <summary>Gets whether this stream receives on a thread of its own (false: on the thread pool, beyond <see cref="MaxThreads"/>).</summary>
    public bool OwnThread { get; private set; }

    /// <summary>Gets the socket (the pipe owns it).</summary>
    public Socket Socket { get; }

    /// <summary>Gets what the peer sent, written by the receive thread.</summary>
    public PipeReader Input => _input.Reader;

    /// <summary>Gets where to write for the peer; a flush sends on the calling thread (writers serialise their flushes).</summary>
    public PipeWriter Output { get; }

    /// <summary>Wraps a connected stream socket and starts its receive thread.</summary>
    /// <param name="socket">A connected stream socket; the pipe takes ownership of it.</param>
    /// <param name="name">The thread's name (e.g. "dns stream 0"), for debuggers and /proc/PID/task/*/comm.</param>
    /// <returns>The pipe; close it with <see cref="CloseAsync"/> or <see cref="Dispose"/>.</returns>
    public static DnsStreamPipe Start(Socket socket, string name)
    {
        ArgumentNullException.ThrowIfNull(socket);
        var pipe = new DnsStreamPipe(socket);
        if (Interlocked.Increment(ref s_threads) <= MaxThreads && TryStartThread(pipe, name))
        {
            return pipe;
        }

        Interlocked.Decrement(ref s_threads);
        pipe.OwnThread = false;
        _ = pipe.ReceiveOnThreadPoolAsync();
        return pipe;
    }

    /// <summary>Starts a DNS thread (<see cref="DnsThread.Start"/>); tests make it fail as pthread_create can.</summary>
    internal static Action<string, Action<object?>, object?> StartThread { get; set; } = DnsThread.Start;

    /// <summary>Starts the pipe's receive thread; false when the runtime cannot start one (pthread_create failed: out of
    /// memory, the process's thread limit, or descriptors at the limit), and the caller receives on the thread pool.</summary>
    private static bool TryStartThread(DnsStreamPipe pipe, string name)
    {
        pipe.OwnThread = true;
        try
        {
            StartThread(name, static state => ((DnsStreamPipe)state!).ReceiveOnOwnThread(), pipe);
            return true;
        }
        catch (Exception ex) when (ex is OutOfMemoryException or ThreadStartException)
        {
            return false;
        }
    }

    /// <summary>
    /// Completes <see cref="Output"/> (its buffered bytes are sent first), shuts the send side down, and disposes the
    /// pipe. A peer that does not take the tail within <paramref name="cancellationToken"/> loses it.
    /// </summary>
    /// <param name="cancellationToken">Stops waiting for the tail; the pipe is disposed regardless.</param>
    /// <returns>A task that completes when the pipe is disposed.</returns>
    public async ValueTask CloseAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            await Output.FlushAsync(cancellationToken).ConfigureAwait(false);
            await Output.CompleteAsync().ConfigureAwait(false);
            Socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
            // A peer that took nothing, or a stream already gone: dispose below.
        }
        finally
        {
            Dispose();
        }
    }

    /// <summary>Closes the socket: the receive thread's read fails and the thread ends. Bytes not yet flushed are
    /// dropped (a writer may still hold <see cref="Output"/>: it fails on its next flush).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            // Wakes a receive blocked in the kernel (closing alone does not on Linux).
            Socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Not connected any more, or already closed.
        }

        _stream.Dispose();
        Socket.Dispose();

        // A receive thread blocked in a flush (a megabyte the reader did not take) would never wake: nothing reads the
        // input once serving has ended (a review found such threads leaked, each holding its megabyte and a place
        // among MaxThreads).
        _input.Writer.CancelPendingFlush();
    }

    private void ReceiveOnOwnThread()
    {
        try
        {
            ReceiveLoop();
        }
        finally
        {
            Interlocked.Decrement(ref s_threads);
        }
    }

    private async Task ReceiveOnThreadPoolAsync()
    {
        PipeWriter writer = _input.Writer;
        Exception? error = null;
        try
        {
            while (true)
            {
                Memory<byte> memory = writer.GetMemory(InputOptions.MinimumSegmentSize);
                int received = await Socket.ReceiveAsync(memory, SocketFlags.None).ConfigureAwait(false);
                if (received == 0)
                {
                    break;
                }

                writer.Advance(received);
                FlushResult result = await writer.FlushAsync().ConfigureAwait(false);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException or InvalidOperationException)
        {
            error = Volatile.Read(ref _disposed) != 0 ? null : ex;
        }

        await writer.CompleteAsync(error).ConfigureAwait(false);
    }

    private void ReceiveLoop()
    {
        PipeWriter writer = _input.Writer;
        Exception? error = null;
        try
        {
            while (true)
            {
                // Wait in poll(2) on this thread, woken by the kernel itself: a socket that has seen an asynchronous
                // operation (connected or accepted asynchronously, as tunnel streams are) is non-blocking, and .NET
                // emulates a blocking Receive on it by waiting for the process's socket event thread, which a
                // connection flood keeps busy at normal priority (stress suite scenario 1: all but 4 of 647 DNS
                // thread wake-ups came from it). Once poll reports the socket readable (or closed, or failed), the
                // Receive below returns at once. The timeout only lets the loop see a Dispose that raced the wait.
                if (!Socket.Poll(PollTimeoutMicroseconds, SelectMode.SelectRead))
                {
                    if (Volatile.Read(ref _disposed) != 0)
                    {
                        break;
                    }

                    continue;
                }

                Memory<byte> memory = writer.GetMemory(InputOptions.MinimumSegmentSize);
                int received = Socket.Receive(memory.Span, SocketFlags.None);
                if (received == 0)
                {
                    break;
                }

                writer.Advance(received);

                // The reader runs inline here; a flush waits only while it has not taken a megabyte.
                ValueTask<FlushResult> flush = writer.FlushAsync();
                FlushResult result = flush.IsCompletedSuccessfully ? flush.Result : flush.AsTask().GetAwaiter().GetResult();
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException or InvalidOperationException)
        {
            // Reset, or closed by Dispose: the reader sees the error (a disposed pipe's reader is already done).
            error = Volatile.Read(ref _disposed) != 0 ? null : ex;
        }

        writer.Complete(error);
    }
}
