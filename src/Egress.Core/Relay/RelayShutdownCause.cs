namespace Egress.Relay;

/// <summary>Why a relay ended: the first terminal event, recorded once (later events do not overwrite it).</summary>
public enum RelayShutdownCause
{
    /// <summary>The relay has not ended. A finished relay never reports this value.</summary>
    None = 0,

    /// <summary>Both sides reached end of stream and each end of stream was forwarded as a half-close.</summary>
    BothCompleted = 1,

    /// <summary>Reading from side A failed (for a socket: reset or I/O error).</summary>
    AReadError = 2,

    /// <summary>Reading from side B failed (for a socket: reset or I/O error).</summary>
    BReadError = 3,

    /// <summary>Writing to side A failed.</summary>
    AWriteError = 4,

    /// <summary>Writing to side B failed.</summary>
    BWriteError = 5,

    /// <summary>
    /// Side A's output stopped accepting data (its consumer completed) while B still had data for it.
    /// The B-to-A direction ended there; the other direction was allowed to finish.
    /// </summary>
    AOutputClosed = 6,

    /// <summary>
    /// Side B's output stopped accepting data (its consumer completed) while A still had data for it.
    /// The A-to-B direction ended there; the other direction was allowed to finish.
    /// </summary>
    BOutputClosed = 7,

    /// <summary>No byte moved in either direction for the configured idle timeout (<see cref="RelayOptions.IdleTimeout"/>),
    /// here or, on a tunnel v2 stream, on the far host (its END(IdleTimeout)). A half-closed relay that times out first by
    /// its shorter timeout reports <see cref="HalfClosedTimeout"/> instead.</summary>
    IdleTimeout = 8,

    /// <summary>The caller's cancellation token was cancelled.</summary>
    Cancelled = 9,

    /// <summary>The first bytes from side A were refused before any of them was sent to B (e.g. a TLS ClientHello whose
    /// server name is not allowed for the destination), here or, on a tunnel v2 stream, by the far host (its END(Refused)
    /// came before any byte); both sides were reset.</summary>
    Refused = 10,

    /// <summary>One direction had ended at end of stream (a half-close) and no byte moved in either direction for the
    /// half-closed timeout (<see cref="RelayOptions.HalfClosedTimeout"/>, shorter than the idle timeout); both sides were
    /// reset. A tunnel v2 stream tells its far host END(IdleTimeout), which that host reports as
    /// <see cref="IdleTimeout"/>: the protocol has one timeout cause.</summary>
    HalfClosedTimeout = 11,
}
