namespace Egress.Relay;

/// <summary>Settings for <see cref="DuplexRelay.RunAsync"/>.</summary>
public sealed record RelayOptions
{
    /// <summary>Options with no idle timeout and the system clock.</summary>
    public static RelayOptions Default { get; } = new();

    /// <summary>
    /// How long the relay may go without moving a byte in either direction before both sides are aborted.
    /// <see langword="null"/> or <see cref="Timeout.InfiniteTimeSpan"/> disables the timeout; otherwise it must be positive.
    /// </summary>
    public TimeSpan? IdleTimeout { get; init; }

    /// <summary>
    /// Whether <see cref="SocketRelay"/> moves bytes with splice(2) through a kernel pipe instead of copying them through
    /// user space (Linux only; default on). A socket type that cannot splice falls back to copying by itself.
    /// </summary>
    public bool UseSplice { get; init; } = true;

    /// <summary>The clock used for the idle timeout and <see cref="RelayResult.Duration"/>.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;
}
