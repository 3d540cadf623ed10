namespace Egress.Configuration;

/// <summary>The <c>[relay]</c> section: byte relaying between a client and its destination.</summary>
public sealed class RelaySection
{
    internal RelaySection(TimeSpan idleTimeout, TimeSpan halfClosedTimeout, TimeSpan shutdownDrain, bool splice)
    {
        IdleTimeout = idleTimeout;
        HalfClosedTimeout = halfClosedTimeout;
        ShutdownDrain = shutdownDrain;
        Splice = splice;
    }

    /// <summary>
    /// Gets how long a relayed connection may carry no bytes in either direction before it is closed
    /// (<c>relay.idle_timeout_seconds</c>, default 1 h); <see cref="Timeout.InfiniteTimeSpan"/> when the file sets 0.
    /// </summary>
    public TimeSpan IdleTimeout { get; }

    /// <summary>
    /// Gets how long a relayed connection one side of which has closed (its FIN passed on, a half-close) may carry no
    /// bytes before it is closed (<c>relay.half_closed_timeout_seconds</c>, default 120 s); <see cref="Timeout.InfiniteTimeSpan"/>
    /// when the file sets 0 (then only <see cref="IdleTimeout"/> applies). See <see cref="Relay.RelayOptions.HalfClosedTimeout"/>.
    /// </summary>
    public TimeSpan HalfClosedTimeout { get; }

    /// <summary>
    /// Gets how long a stop (SIGTERM, SIGINT) lets relayed connections finish before aborting them
    /// (<c>relay.shutdown_drain_seconds</c>, 0 to 3600, default 10 s; 0 aborts at once).
    /// </summary>
    public TimeSpan ShutdownDrain { get; }

    /// <summary>
    /// Gets whether relayed TCP bytes move between sockets with splice(2), through a kernel pipe, rather than being
    /// copied through the process (<c>relay.splice</c>, default <see langword="true"/>; see <see cref="Relay.RelayOptions.UseSplice"/>).
    /// </summary>
    public bool Splice { get; }
}
