using System.Net.Sockets;
using Egress.Sockets;

namespace Egress.Relay;

/// <summary>
/// One running <see cref="SocketRelay"/>: two direction loops and their <see cref="RelayMonitor"/>. A direction moves
/// bytes with splice(2) through a kernel pipe (<see cref="RelayOptions.UseSplice"/>, on Linux) or copies them through a
/// pooled buffer.
/// </summary>
internal sealed partial class SocketRelaySession
{
    private readonly Socket _a;
    private readonly Socket _b;
    private readonly RelayMonitor _monitor;
    private readonly bool _splice;
    private readonly Func<SplicePipe?> _rentPipe;

    public SocketRelaySession(Socket a, Socket b, RelayOptions options)
        : this(a, b, options, SplicePipe.TryRent)
    {
    }

    /// <param name="a">One side.</param>
    /// <param name="b">The other side.</param>
    /// <param name="options">Idle timeout, clock, splicing.</param>
    /// <param name="rentPipe">Where a splicing direction gets its pipe; null means none can be had (it copies instead).</param>
    internal SocketRelaySession(Socket a, Socket b, RelayOptions options, Func<SplicePipe?> rentPipe)
    {
        _a = a;
        _b = b;
        _monitor = new RelayMonitor(options, ResetBoth);
        _splice = options.UseSplice && OperatingSystem.IsLinux();
        _rentPipe = rentPipe;
    }

    /// <summary>Bytes that went socket to socket through a kernel pipe, A to B and B to A (the rest was copied).</summary>
    internal long SplicedAToB { get; private set; }

    /// <inheritdoc cref="SplicedAToB"/>
    internal long SplicedBToA { get; private set; }

    public async Task<RelayResult> RunAsync(
        ReadOnlyMemory<byte> readFromA, ReadOnlyMemory<byte> readFromB, CancellationToken cancellationToken, IFirstBytesGate? gate = null)
    {
        _monitor.Start(cancellationToken);
        bool splice = _splice && CanSplice();
        Task<long> forward = gate is not null ? GatedForwardAsync(gate, readFromA, splice, cancellationToken)
            : splice ? SpliceAsync(_a, _b, readFromA, fromA: true) : CopyAsync(_a, _b, readFromA, fromA: true);
        Task<long> backward = splice ? SpliceAsync(_b, _a, readFromB, fromA: false) : CopyAsync(_b, _a, readFromB, fromA: false);
        long aToB = await forward.ConfigureAwait(false); // the direction loops never throw
        long bToA = await backward.ConfigureAwait(false);
        return _monitor.Finish(aToB, bToA);
    }

    /// <summary>
    /// The A-to-B direction behind a gate: the gate reads A's first bytes (after <paramref name="readFromA"/>), then they
    /// go first and the loop continues as usual; a refusal aborts the relay with nothing sent. Never throws.
    /// </summary>
    private async Task<long> GatedForwardAsync(IFirstBytesGate gate, ReadOnlyMemory<byte> readFromA, bool splice, CancellationToken cancellationToken)
    {
        FirstBytes first;
        try
        {
            ReadOnlyMemory<byte> already = readFromA;
            first = await gate.InspectAsync(
                (buffer, token) =>
                {
                    if (already.IsEmpty)
                    {
                        return _a.ReceiveAsync(buffer, SocketFlags.None, token);
                    }

                    int count = Math.Min(buffer.Length, already.Length);
                    already[..count].CopyTo(buffer);
                    already = already[count..];
                    return ValueTask.FromResult(count);
                },
                cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            AbortOnError(ex, receiving: true, fromA: true);
            return 0;
        }

        if (!first.Allowed)
        {
            _monitor.Abort(RelayShutdownCause.Refused, null);
            return 0;
        }

        _monitor.Touch();
        return await (splice ? SpliceAsync(_a, _b, first.Received, fromA: true) : CopyAsync(_a, _b, first.Received, fromA: true)).ConfigureAwait(false);
    }

    /// <summary>
    /// A direction loop failed: records which side failed and how (unless the relay was already aborted, which is what
    /// made the loop fail), and aborts both directions.
    /// </summary>
    private void AbortOnError(Exception error, bool receiving, bool fromA)
    {
        if (!_monitor.IsAborted)
        {
            RelayShutdownCause cause = receiving
                ? fromA ? RelayShutdownCause.AReadError : RelayShutdownCause.BReadError
                : fromA ? RelayShutdownCause.BWriteError : RelayShutdownCause.AWriteError;
            _monitor.Abort(cause, error);
        }
    }

    /// <summary>
    /// Puts both sockets in non-blocking mode, which splice needs: a TCP socket waits in splice according to its own
    /// mode, not the splice flags, and a socket only becomes non-blocking by itself on its first asynchronous operation.
    /// </summary>
    /// <returns>False if a socket is already closed (the copy loops then report it).</returns>
    private bool CanSplice()
    {
        try
        {
            _a.Blocking = false;
            _b.Blocking = false;
            return true;
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
        {
            return false;
        }
    }

    /// <summary>The abort: resetting both sockets ends both direction loops (their pending operations fail).</summary>
    private void ResetBoth(RelayShutdownCause _, Exception? __)
    {
        SocketReset.Reset(_a);
        SocketReset.Reset(_b);
    }
}
