using Egress.Configuration;

namespace Egress.Relay;

/// <summary>Settings of a relay: <see cref="SocketRelay.RunAsync(System.Net.Sockets.Socket, System.Net.Sockets.Socket, RelayOptions, CancellationToken)"/>,
/// <see cref="DuplexRelay.RunAsync"/>, and the proxy's and gateway's relays (their options' <c>Relay</c>).</summary>
public sealed record RelayOptions
{
    /// <summary>Options with the configured defaults (<c>relay.idle_timeout_seconds</c>: 1 h, <c>relay.half_closed_timeout_seconds</c>:
    /// 120 s, <c>relay.splice</c>: on) and the system clock.</summary>
    public static RelayOptions Default { get; } = new();

    /// <summary>
    /// How long the relay may go without moving a byte in either direction before both sides are aborted.
    /// <see langword="null"/> or <see cref="Timeout.InfiniteTimeSpan"/> disables the timeout; otherwise it must be positive.
    /// Default 1 h, the default of <c>relay.idle_timeout_seconds</c>.
    /// </summary>
    public TimeSpan? IdleTimeout { get; init; } = ConfigurationKeys.RelayIdleTimeout.DefaultDuration;

    /// <summary>
    /// How long the relay may go without moving a byte once one direction has ended at end of stream (its FIN passed
    /// on: a half-close) before both sides are aborted, as with <see cref="IdleTimeout"/> (the shorter of the two
    /// applies then). A half-closed connection whose other side sends nothing holds its slot: an application that
    /// closes (or exits) while its destination never answers or closes held one until the idle timeout, an hour by
    /// default, and a few hundred such connections shut every other application out (a red-team trial). TCP itself bounds
    /// the mirror state, an orphaned FIN_WAIT2, at 60 s (tcp_fin_timeout). It runs on the side that passes the FIN on
    /// to its socket (on a framed relay, the side that received END(FIN): the sender cannot see how far the far side
    /// has delivered), from when every byte before the FIN was handed to that socket: an app that takes longer than
    /// this to read what is still in its socket buffers, without sending a byte, loses the rest. <see langword="null"/> or
    /// <see cref="Timeout.InfiniteTimeSpan"/> disables it; otherwise it must be positive. Default 120 s, the default of
    /// <c>relay.half_closed_timeout_seconds</c>. The abort's cause is <see cref="RelayShutdownCause.HalfClosedTimeout"/>.
    /// </summary>
    public TimeSpan? HalfClosedTimeout { get; init; } = ConfigurationKeys.RelayHalfClosedTimeout.DefaultDuration;

    /// <summary>Checks <paramref name="options"/> where a service takes them, so that a bad value fails at construction
    /// instead of every relay at run time.</summary>
    /// <param name="options">The options to check.</param>
    /// <param name="name">Their parameter path for the exception (e.g. <c>options.Relay</c>).</param>
    /// <exception cref="ArgumentOutOfRangeException">The idle or half-closed timeout is not above zero (and not
    /// infinite) or above int.MaxValue ms.</exception>
    /// <exception cref="ArgumentException">No <see cref="TimeProvider"/>.</exception>
    /// <exception cref="ArgumentNullException">The options are null.</exception>
    internal static void Validate(RelayOptions options, string name)
    {
        ArgumentNullException.ThrowIfNull(options, name);
        if (options.TimeProvider is null)
        {
            throw new ArgumentException("TimeProvider is required.", name);
        }

        // Checked before the parameter's name is built: every relay checks its options, and allocates nothing for it.
        if (options.IdleTimeout is { } idle && idle != Timeout.InfiniteTimeSpan
            && (idle <= TimeSpan.Zero || idle > TimeSpan.FromMilliseconds(int.MaxValue)))
        {
            throw new ArgumentOutOfRangeException(
                name + "." + nameof(IdleTimeout), idle, "must be above zero and at most int.MaxValue ms, or null or Timeout.InfiniteTimeSpan (no idle timeout)");
        }

        if (options.HalfClosedTimeout is { } halfClosed && halfClosed != Timeout.InfiniteTimeSpan
            && (halfClosed <= TimeSpan.Zero || halfClosed > TimeSpan.FromMilliseconds(int.MaxValue)))
        {
            throw new ArgumentOutOfRangeException(
                name + "." + nameof(HalfClosedTimeout), halfClosed, "must be above zero and at most int.MaxValue ms, or null or Timeout.InfiniteTimeSpan (none)");
        }
    }

    /// <summary>
    /// Whether <see cref="SocketRelay"/> moves bytes with splice(2) through a kernel pipe instead of copying them through
    /// user space (Linux only; default on). A socket type that cannot splice falls back to copying by itself.
    /// </summary>
    public bool UseSplice { get; init; } = ConfigurationKeys.RelaySplice.DefaultBoolean;

    /// <summary>The clock used for the idle timeout and <see cref="RelayResult.Duration"/>.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>The runtime switch (<see cref="AppContext"/>) behind <see cref="EndOnEpollThread"/>'s default.</summary>
    internal const string EndOnEpollThreadSwitch = "Egress.Relay.EndOnEpollThread";

    /// <summary>
    /// Whether a relay that ends clean on an epoll thread (its last direction woken there, nothing aborted it) finishes
    /// there, and its owner's code after it runs there too (the gateway: its log lines, the destination's close, the
    /// wait for the stream's next request; also a next request refused or whose dial failed, answered and logged there;
    /// the proxy: its line and audit record, the stream's return to the pool, the application socket's close),
    /// instead of moving to the thread pool first: one thread hand-off (a futex wake, a worker's wake-up) fewer per
    /// connection. An aborted relay still ends on the pool. Only for a process whose loggers never block and whose code
    /// after a relay neither blocks nor closes a socket another wait holds (<see cref="Sockets.SocketReadiness.WaitReadableInlineAsync(System.Net.Sockets.Socket, bool)"/>):
    /// both hosts turn it on (runtime switch <c>Egress.Relay.EndOnEpollThread</c> in their runtimeconfig.json; their
    /// logger drops lines rather than wait, and the audit log drops records). Off by default: a library caller's logger
    /// may block, as Microsoft's console logger does with a full queue.
    /// </summary>
    internal bool EndOnEpollThread { get; init; } = AppContext.TryGetSwitch(EndOnEpollThreadSwitch, out bool on) && on;
}
