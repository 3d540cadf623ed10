namespace Egress.Relay;

/// <summary>
/// What both relays (<see cref="DuplexRelay"/> and <see cref="SocketRelay"/>) share: the first cause of shutdown and
/// the first error (recorded once; later events do not overwrite them), the idle watchdog (one timer per relay
/// re-armed for the remaining time, reading a last-activity timestamp that the copy loops touch; shorter once a direction
/// has half-closed, <see cref="RelayOptions.HalfClosedTimeout"/>), and cancellation. Idleness and cancellation become
/// one call to the owner's abort callback, which is invoked at most once, and never after <see cref="Finish"/>.
/// </summary>
internal sealed class RelayMonitor
{
    private static readonly TimerCallback s_onIdleTimer = static state => ((RelayMonitor)state!).CheckIdle();
    private static readonly Action<object?> s_onCancelled = static state => ((RelayMonitor)state!).Abort(RelayShutdownCause.Cancelled, null);

    private readonly IRelayAbort _abort;
    private readonly TimeProvider _time;
    private readonly TimeSpan _idleTimeout;
    private readonly bool _tracksIdle;
    private readonly TimeSpan _halfClosedTimeout;
    private readonly bool _tracksHalfClosed;
    private int _halfClosed;
    private ITimer? _idleTimer;
    private CancellationTokenRegistration _cancellation;
    private long _start;
    private long _lastActivity;
    private int _cause;
    private int _state; // Running, Aborted or Finished: an abort and the finish exclude each other
    private Exception? _error;

    /// <param name="options">The idle and half-closed timeouts (null or infinite: none) and the clock.</param>
    /// <param name="abort">Stops the owner's copy loops; called once, on the first abort. The owner itself, not a
    /// delegate: a delegate would be one more object per relay, held as long as the connection.</param>
    public RelayMonitor(RelayOptions options, IRelayAbort abort)
    {
        _abort = abort;
        RelayOptions.Validate(options, nameof(options));
        _time = options.TimeProvider;
        TimeSpan? idle = options.IdleTimeout;
        if (idle is { } timeout && timeout != Timeout.InfiniteTimeSpan)
        {
            _idleTimeout = timeout;
            _tracksIdle = true;
        }

        // Only where it is shorter than the idle timeout: otherwise the idle timeout comes first anyway.
        if (options.HalfClosedTimeout is { } halfClosed && halfClosed != Timeout.InfiniteTimeSpan && (!_tracksIdle || halfClosed < _idleTimeout))
        {
            _halfClosedTimeout = halfClosed;
            _tracksHalfClosed = true;
        }
    }

    /// <summary>The idle timeout that applies now: the half-closed one once a direction has ended, where it is shorter.</summary>
    public TimeSpan IdleTimeout => Volatile.Read(ref _halfClosed) != 0 && _tracksHalfClosed ? _halfClosedTimeout : _idleTimeout;

    private const int Running = 0;
    private const int Aborted = 1;
    private const int Finished = 2;

    public bool IsAborted => Volatile.Read(ref _state) == Aborted;

    public RelayShutdownCause Cause => (RelayShutdownCause)Volatile.Read(ref _cause);

    /// <summary>Starts the clock, the idle watchdog and the cancellation hook.</summary>
    public void Start(CancellationToken cancellationToken)
    {
        _start = _time.GetTimestamp();
        _lastActivity = _start;
        if (_tracksIdle)
        {
            // Created disarmed and armed after the field is set, so the callback always sees the timer.
            _idleTimer = _time.CreateTimer(s_onIdleTimer, this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _idleTimer.Change(_idleTimeout, Timeout.InfiniteTimeSpan);
        }

        _cancellation = cancellationToken.UnsafeRegister(s_onCancelled, this);
    }

    /// <summary>Records that bytes moved now (cheap: one timestamp write, only when an idle timeout is set).</summary>
    public void Touch()
    {
        if (_tracksIdle || _tracksHalfClosed)
        {
            Volatile.Write(ref _lastActivity, _time.GetTimestamp());
        }
    }

    /// <summary>
    /// One direction ended at end of stream and passed its FIN on (a half-close): from now the half-closed timeout
    /// applies (<see cref="RelayOptions.HalfClosedTimeout"/>), counted from now. Called by each direction that ends so;
    /// only the first call does anything.
    /// </summary>
    public void HalfClosed()
    {
        if (!_tracksHalfClosed || Interlocked.Exchange(ref _halfClosed, 1) != 0 || Volatile.Read(ref _state) != Running)
        {
            return;
        }

        Touch();
        if (_idleTimer is { } timer)
        {
            try
            {
                timer.Change(_halfClosedTimeout, Timeout.InfiniteTimeSpan);
            }
            catch (ObjectDisposedException)
            {
                // The relay finished meanwhile.
            }
        }
        else
        {
            // No idle timeout: the watchdog starts now. A direction ends before the relay finishes, so Finish sees it.
            ITimer created = _time.CreateTimer(s_onIdleTimer, this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            Volatile.Write(ref _idleTimer, created);
            created.Change(_halfClosedTimeout, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Records <paramref name="cause"/> if no cause was recorded yet, and <paramref name="error"/> if it is the first.</summary>
    /// <returns>Whether <paramref name="cause"/> is the first cause.</returns>
    public bool TrySetCause(RelayShutdownCause cause, Exception? error)
    {
        if (error is not null)
        {
            Interlocked.CompareExchange(ref _error, error, null);
        }

        return Interlocked.CompareExchange(ref _cause, (int)cause, (int)RelayShutdownCause.None) == (int)RelayShutdownCause.None;
    }

    /// <summary>Records <paramref name="cause"/> (if first) and, the first time only, stops the owner's loops; nothing
    /// once <see cref="Finish"/> has run (an idle check that was already running when the relay finished clean must not
    /// reset the sockets of a connection reported clean, and perhaps already reused).</summary>
    public void Abort(RelayShutdownCause cause, Exception? error)
    {
        int before = Interlocked.CompareExchange(ref _state, Aborted, Running);
        if (before == Finished)
        {
            return;
        }

        TrySetCause(cause, error);
        if (before == Running)
        {
            _abort.Abort(cause, error);
        }
    }

    /// <summary>Stops the watchdog and the cancellation hook, and builds the result (both ends clean unless a cause came first).</summary>
    public RelayResult Finish(long bytesAToB, long bytesBToA)
    {
        if (Interlocked.CompareExchange(ref _state, Finished, Running) == Aborted)
        {
            // An abort came first and stands: its cause is the result's, recorded by Abort right after it won.
            SpinWait spin = default;
            while (Volatile.Read(ref _cause) == (int)RelayShutdownCause.None)
            {
                spin.SpinOnce();
            }
        }

        _cancellation.Dispose();
        Volatile.Read(ref _idleTimer)?.Dispose();
        TrySetCause(RelayShutdownCause.BothCompleted, null);
        return new RelayResult(bytesAToB, bytesBToA, Cause, Volatile.Read(ref _error), _time.GetElapsedTime(_start));
    }

    private void CheckIdle()
    {
        if (IsAborted)
        {
            return;
        }

        bool halfClosed = Volatile.Read(ref _halfClosed) != 0 && _tracksHalfClosed;
        TimeSpan timeout = halfClosed ? _halfClosedTimeout : _idleTimeout;
        TimeSpan idleFor = _time.GetElapsedTime(Volatile.Read(ref _lastActivity));
        if (idleFor >= timeout) // half-closed, the timeout is the shorter one (the constructor tracks it only then)
        {
            bool byHalfClosedTimeout = halfClosed && (!_tracksIdle || idleFor < _idleTimeout);
            Abort(
                byHalfClosedTimeout ? RelayShutdownCause.HalfClosedTimeout : RelayShutdownCause.IdleTimeout,
                byHalfClosedTimeout
                    ? new TimeoutException($"half-closed (one side ended) and no data for {timeout.TotalSeconds:0.###} s (relay.half_closed_timeout_seconds)")
                    : null);
            return;
        }

        Rearm(timeout - idleFor);
        if (!halfClosed && Volatile.Read(ref _halfClosed) != 0 && _tracksHalfClosed)
        {
            Rearm(TimeSpan.Zero); // half-closed meanwhile (HalfClosed re-armed before this did): check again at once
        }
    }

    private void Rearm(TimeSpan dueTime)
    {
        try
        {
            Volatile.Read(ref _idleTimer)?.Change(dueTime, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
            // The relay finished while this check ran.
        }
    }
}

/// <summary>What a <see cref="RelayMonitor"/> calls, once, to stop its owner's copy loops.</summary>
internal interface IRelayAbort
{
    /// <summary>Stops the copy loops: <paramref name="cause"/> is the first cause, <paramref name="error"/> its error if any.</summary>
    void Abort(RelayShutdownCause cause, Exception? error);
}
