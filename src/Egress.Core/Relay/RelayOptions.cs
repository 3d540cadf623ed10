using Egress.Configuration;

namespace Egress.Relay;

/// <summary>Settings for <see cref="DuplexRelay.RunAsync"/>.</summary>
public sealed record RelayOptions
{
    /// <summary>Options with the configured defaults (<c>relay.idle_timeout_seconds</c>: 1 h, <c>relay.splice</c>: on) and the system clock.</summary>
    public static RelayOptions Default { get; } = new();

    /// <summary>
    /// How long the relay may go without moving a byte in either direction before both sides are aborted.
    /// <see langword="null"/> or <see cref="Timeout.InfiniteTimeSpan"/> disables the timeout; otherwise it must be positive.
    /// Default 1 h, the default of <c>relay.idle_timeout_seconds</c>.
    /// </summary>
    public TimeSpan? IdleTimeout { get; init; } = ConfigurationKeys.RelayIdleTimeout.DefaultDuration;

    /// <summary>
    /// Whether <see cref="SocketRelay"/> moves bytes with splice(2) through a kernel pipe instead of copying them through
    /// user space (Linux only; default on). A socket type that cannot splice falls back to copying by itself.
    /// </summary>
    public bool UseSplice { get; init; } = ConfigurationKeys.RelaySplice.DefaultBoolean;

    /// <summary>The clock used for the idle timeout and <see cref="RelayResult.Duration"/>.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;
}
