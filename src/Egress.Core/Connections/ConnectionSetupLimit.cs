using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Egress.Configuration;

namespace Egress.Connections;

/// <summary>
/// The most connections a listener has accepted and not yet set up (for the proxy: original destination read, policy
/// checked, tunnel stream opened and the parent's status received), over all listeners that share it. A listener
/// takes a place for each connection it admits and, while none is free, waits and accepts no more, so that a flood of connections waits in the
/// kernel's listen backlog, where it costs the process nothing, instead of being accepted thousands at once and set
/// up concurrently (every setup's socket events then queue on the runtime's socket engine thread and the thread pool,
/// in front of everything else the process does). The connection gives its place back once set up
/// (<see cref="ConnectionSetup.Complete"/>), or when refused or ended.
/// <para>No destination (address and port) holds more than its share of the places (<see cref="DestinationShare"/>,
/// three quarters). A connection whose destination already has that many being set up waits for the destination's
/// turn (<see cref="ConnectionSetup.TakeTurnAsync"/>), first come first served, holding its place: for a destination
/// that sets up quickly a turn comes within a setup's time, and the rest of a burst waits in the backlog as before.
/// When a turn has not come within <see cref="AsideAfter"/> (the destination is slow to connect: one that never
/// answers holds each setup for the parent's whole connect timeout), the connection gives its place back and waits
/// aside, and so do its destination's further connections while any waits aside, so that it cannot hold every place
/// while connections to other destinations wait in the backlog behind it. A connection waiting aside has been accepted
/// and counts toward the connection limit, so at most <see cref="MaxWaitingAside"/> wait aside; one more that would is
/// refused (<see cref="SetupTurn.Full"/>: reset at once, as at the connection limit) rather than hold a place. No
/// connection waits for its turn longer than <see cref="MaxTurnWait"/> in all: behind a destination that never answers
/// (48 turns per connect timeout) the last of a thousand would otherwise wait minutes, holding its connection slot, and
/// then be dialled long after its application gave up; past it, it is refused (<see cref="SetupTurn.TimedOut"/>).</para>
/// </summary>
internal sealed class ConnectionSetupLimit
{
    /// <summary>Connections set up at once per processor when the limit is derived.</summary>
    public const int DerivedPerProcessor = 32;

    /// <summary>The smallest derived limit.</summary>
    public const int MinDerived = 16;

    /// <summary>Connections that may wait aside for their destination's turn, without a place, per place (1,024 for 64
    /// places), and at most half the connection limit (<see cref="ConnectionSetupLimit(int, string, int)"/>).</summary>
    public const int WaitingAsidePerPlace = 16;

    /// <summary>How long a connection waits for its destination's turn holding its place before it gives the place back
    /// and waits aside: longer than a setup to a destination that answers takes (a connect and a round trip to the
    /// parent), much shorter than the parent's connect timeout (5 s).</summary>
    public static readonly TimeSpan AsideAfter = TimeSpan.FromMilliseconds(250);

    /// <summary>The most destinations one sweep names to <see cref="SettingUpAside"/>.</summary>
    public const int MaxDestinationsNamed = 4;

    private readonly SemaphoreSlim _places;
    private readonly string _setting;
    private readonly bool _derived;

    /// <summary>Guards <see cref="_inProgress"/>, <see cref="_turns"/>, <see cref="_waitingAside"/> and <see cref="_stopped"/>.</summary>
    private readonly Lock _gate = new();

    /// <summary>Per destination, its connections being set up (at most <see cref="DestinationShare"/>); an entry is
    /// removed at 0.</summary>
    private readonly Dictionary<IPEndPoint, int> _inProgress = [];

    /// <summary>Per destination at its share, the connections waiting for its turn.</summary>
    private readonly Dictionary<IPEndPoint, DestinationWaits> _turns = [];
    private int _waitingAside;

    /// <summary>The setups that hold their turn and a place, oldest turn first (<see cref="ConnectionSetup.Older"/>,
    /// <see cref="ConnectionSetup.Newer"/>): the sweep gives the places of those that have held them
    /// <see cref="AsideAfter"/> back.</summary>
    private ConnectionSetup? _oldestHolding;
    private ConnectionSetup? _newestHolding;

    /// <summary>Setups that hold their turn and gave their place back (<see cref="SweepSlowSetups"/>).</summary>
    private int _setUpAside;

    /// <summary>Accept loops waiting for a place: the sweep runs only while one does.</summary>
    private int _acceptsWaiting;
    private ITimer? _sweep;
    private bool _stopped;
    private string? _fullText;
    private string? _timedOutText;
    private long _waits;

    /// <summary>Creates the limit of one service.</summary>
    /// <param name="configured">The configured limit; 0 derives it (<see cref="DerivedLimit"/>).</param>
    /// <param name="setting">The configuration key that sets it, for logs (e.g. <c>enclave.max_pending_connections</c>).</param>
    /// <param name="connectionLimit">The most connections the service serves at once (<c>enclave.max_connections</c>):
    /// connections waiting aside count toward it, so at most half of it wait aside.</param>
    public ConnectionSetupLimit(int configured, string setting, int connectionLimit = int.MaxValue)
    {
        _setting = setting;
        _derived = configured <= 0;
        Limit = _derived ? DerivedLimit(Environment.ProcessorCount) : configured;
        _places = new SemaphoreSlim(Limit, Limit);
        DestinationShare = ThreeQuarterShare.Of(Limit);
        MaxWaitingAside = (int)Math.Min(Math.Max(0, connectionLimit) / 2, (long)Limit * WaitingAsidePerPlace);
    }

    /// <summary>Gets the most connections being set up at once.</summary>
    public int Limit { get; }

    /// <summary>Gets the most connections to one destination (address and port) being set up at once: three quarters
    /// of the places (a quarter is left to the others: 48 of 64), at least 1 (with a single place, none is left).</summary>
    public int DestinationShare { get; }

    /// <summary>Gets the most connections waiting aside for their destination's turn without a place
    /// (<see cref="WaitingAsidePerPlace"/> per place, at most half the connection limit).</summary>
    public int MaxWaitingAside { get; }

    /// <summary>Gets the connections waiting aside for their destination's turn now, without a place.</summary>
    public int WaitingAside
    {
        get
        {
            lock (_gate)
            {
                return _waitingAside;
            }
        }
    }

    /// <summary>Gets the connections that hold a place: accepted and not yet set up.</summary>
    public int Pending => Limit - _places.CurrentCount;

    /// <summary>Gets how many times an accept has had to wait for a place since the start.</summary>
    public long Waits => Interlocked.Read(ref _waits);

    /// <summary>Gets what is called (on the accepting thread) each time an accept has to wait for a place, e.g. to log
    /// it rate-limited; null: nothing.</summary>
    public Action<ConnectionSetupLimit>? Waiting { get; init; }

    /// <summary>Gets what is called each time a connection waits aside for its destination's turn, e.g. to log it
    /// rate-limited; null: nothing. An exception it throws is not passed on: a line that cannot be written costs no turn
    /// or place.</summary>
    public Action<ConnectionSetupLimit, IPEndPoint>? WaitingForTurn { get; init; }

    /// <summary>Gets what is called, outside the limit's lock, after a sweep gave places back (setups that had held
    /// them <see cref="AsideAfter"/> while the accept loop waited for one): how many, the destinations of the first of
    /// them (at most <see cref="MaxDestinationsNamed"/>) and how many destinations in all; e.g. to log it rate-limited;
    /// null: nothing. An exception it throws is not passed on.</summary>
    public Action<SetUpAsideReport>? SettingUpAside { get; init; }

    /// <summary>Gets the setups now holding their destination's turn without a place: slow, they gave it back while the
    /// accept loop waited for one.</summary>
    public int SetUpAside
    {
        get
        {
            lock (_gate)
            {
                return _setUpAside;
            }
        }
    }

    /// <summary>Gets the longest a connection waits for its destination's turn in all, holding its place and then aside
    /// (<see cref="SetupTurn.TimedOut"/> after it); the proxy sets <c>tunnel.status_timeout_ms</c>: a connection waits
    /// no longer for its turn than for the parent's status once it has it. Default 10 s.</summary>
    public TimeSpan MaxTurnWait { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Gets the clock of <see cref="AsideAfter"/> and <see cref="MaxTurnWait"/>.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>The default limit for <paramref name="processors"/> processors: <see cref="DerivedPerProcessor"/> each,
    /// at least <see cref="MinDerived"/>. Setting a connection up is a few system calls and one round trip to the
    /// parent: more of them at once than a few dozen per processor adds no throughput, only queueing inside the
    /// process.</summary>
    public static int DerivedLimit(int processors) => Math.Max(MinDerived, DerivedPerProcessor * Math.Max(1, processors));

    /// <summary>Takes a place, at once when one is free; false when the caller had to wait for it.</summary>
    /// <param name="cancellationToken">Stops waiting (the listener is stopping).</param>
    /// <returns>True when a place was free at once, false when the caller waited for one.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public async ValueTask<bool> TakeAsync(CancellationToken cancellationToken)
    {
        if (_places.Wait(0, CancellationToken.None))
        {
            return true;
        }

        Interlocked.Increment(ref _waits);
        Waiting?.Invoke(this);
        SetUpAsideReport? slow;
        lock (_gate)
        {
            _acceptsWaiting++;
            slow = SweepSlowSetups(); // setups that are slow give their places back, now or once they have held them AsideAfter
        }

        ReportSetUpAside(slow);

        try
        {
            await _places.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            lock (_gate)
            {
                _acceptsWaiting--;
            }
        }

        return false;
    }

    /// <summary>A connection that holds a place taken with <see cref="TakeAsync"/>; give it back with
    /// <see cref="ConnectionSetup.Complete"/>.</summary>
    public ConnectionSetup Hold() => new(this);

    /// <summary>Gives back a place taken with <see cref="TakeAsync"/> (<see cref="ConnectionSetup.Complete"/> does, once).</summary>
    internal void Return() => _places.Release();

    /// <summary>Gets how many destinations have connections being set up or waiting for a turn (tests: none is left
    /// behind).</summary>
    internal int DestinationsTracked
    {
        get
        {
            lock (_gate)
            {
                return _inProgress.Count + _turns.Count;
            }
        }
    }

    /// <summary>Takes <paramref name="setup"/>'s turn for <paramref name="destination"/>: at once while the destination
    /// has fewer than <see cref="DestinationShare"/> connections being set up; otherwise the setup waits for a turn,
    /// holding its place until <see cref="AsideAfter"/> and aside after it (at once while others wait aside), unless
    /// <see cref="MaxWaitingAside"/> already do: then it is refused; and at most <see cref="MaxTurnWait"/>.</summary>
    /// <returns><see cref="SetupTurn.Taken"/> (the setup holds the turn and a place; <see cref="LeaveTurn"/> gives both
    /// back); <see cref="SetupTurn.Stopped"/> when <paramref name="cancellationToken"/> was cancelled or the service
    /// stopped (<see cref="StopWaits"/>) first, <see cref="SetupTurn.Full"/> or <see cref="SetupTurn.TimedOut"/>: the
    /// setup then holds no turn (and a place only when it had not waited aside).</returns>
    internal ValueTask<SetupTurn> TakeTurnAsync(ConnectionSetup setup, IPEndPoint destination, CancellationToken cancellationToken)
    {
        Turn turn;
        bool slow;
        lock (_gate)
        {
            ref int inProgress = ref CollectionsMarshal.GetValueRefOrAddDefault(_inProgress, destination, out _);
            if (inProgress < DestinationShare)
            {
                inProgress++;
                Link(setup, destination);
                return new ValueTask<SetupTurn>(SetupTurn.Taken);
            }

            if (_stopped)
            {
                return new ValueTask<SetupTurn>(SetupTurn.Stopped); // it sets up no more connections that would wait
            }

            ref DestinationWaits? waits = ref CollectionsMarshal.GetValueRefOrAddDefault(_turns, destination, out _);
            waits ??= new DestinationWaits();
            slow = waits.Aside > 0; // its connections already wait aside: so does this one, at once
            if (slow && _waitingAside >= MaxWaitingAside)
            {
                Debug.Assert(!waits.IsEmpty, "a destination with connections waiting aside has them queued");
                return new ValueTask<SetupTurn>(SetupTurn.Full);
            }

            turn = new Turn(this, setup, destination, TimeProvider.GetTimestamp());
            TimeSpan first = slow || MaxTurnWait < AsideAfter ? MaxTurnWait : AsideAfter;
            turn.StartTimer(TimeProvider, first); // before it is queued: a clock that throws leaves nothing behind

            waits.Enqueue(turn);
            if (slow)
            {
                MoveAside(turn, waits);
            }
        }

        if (slow)
        {
            Report(destination);
        }

        return WaitForTurnAsync(setup, turn, cancellationToken);
    }

    /// <summary>Gives <paramref name="setup"/>'s turn for <paramref name="destination"/> back, with its place when it
    /// holds one: to the first connection waiting for the turn (a connection waiting aside has no place: it takes the
    /// place with the turn, or, when the giver had given its place back as slow, is set up without one too), or to
    /// nobody.</summary>
    /// <param name="setup">The connection leaving its turn.</param>
    /// <param name="destination">The destination whose turn it holds.</param>
    /// <param name="holdsPlace">Whether it still holds a place (false: it was set up aside).</param>
    /// <returns>True when the place went with the turn (the caller must not give it back).</returns>
    internal bool LeaveTurn(ConnectionSetup setup, IPEndPoint destination, bool holdsPlace)
    {
        lock (_gate)
        {
            Unlink(setup);
            if (setup.SetUpAside)
            {
                setup.SetUpAside = false;
                _setUpAside--;
            }

            return HandTurnOn(destination, holdsPlace);
        }
    }

    /// <summary>Under <see cref="_gate"/>: the turn of a connection leaving it goes to the first waiting for it, else
    /// the destination has one fewer in progress.</summary>
    /// <param name="destination">The destination whose turn is given.</param>
    /// <param name="holdsPlace">Whether the leaver holds a place, to go with the turn to one waiting aside.</param>
    /// <returns>True when the place went with the turn.</returns>
    private bool HandTurnOn(IPEndPoint destination, bool holdsPlace)
    {
        if (_turns.TryGetValue(destination, out var waits))
        {
            while (waits.TryDequeue(out var next))
            {
                if (next.Task.IsCompleted)
                {
                    continue; // a cancelled or timed-out wait, left queued
                }

                bool placeGoes = next.Aside && holdsPlace;
                if (placeGoes)
                {
                    next.Setup.TookPlaceAgain(); // before its result: a sweep may take it back from then on
                }
                else if (next.Aside)
                {
                    // The giver was set up aside, without a place: so is this one, on its destination's slow turn.
                    next.Setup.SetUpAside = true;
                    _setUpAside++;
                }

                if (!next.Setup.SetUpAside)
                {
                    Link(next.Setup, destination); // it holds a place: its own, or the one that came with the turn
                }

                next.TrySetResult(SetupTurn.Taken);
                if (waits.IsEmpty)
                {
                    _turns.Remove(destination);
                }

                return placeGoes; // handed over: as many in progress as before
            }

            _turns.Remove(destination);
        }

        ref int inProgress = ref CollectionsMarshal.GetValueRefOrNullRef(_inProgress, destination);
        if (!Unsafe.IsNullRef(ref inProgress) && --inProgress <= 0)
        {
            _inProgress.Remove(destination);
        }

        return false;
    }

    /// <summary>The service is stopping: every connection waiting for its destination's turn stops waiting
    /// (<see cref="TakeTurnAsync"/> gives <see cref="SetupTurn.Stopped"/>), and none waits from now on. Connections still in the listen
    /// backlog are reset at a stop; those accepted and waiting aside end as they would, rather than be set up during the
    /// drain.</summary>
    internal void StopWaits()
    {
        lock (_gate)
        {
            _stopped = true;
            foreach (var waits in _turns.Values)
            {
                while (waits.TryDequeue(out var turn))
                {
                    turn.TrySetResult(SetupTurn.Stopped);
                }
            }

            _turns.Clear();
        }
    }

    private async ValueTask<SetupTurn> WaitForTurnAsync(ConnectionSetup setup, Turn turn, CancellationToken cancellationToken)
    {
        SetupTurn taken;
        try
        {
            using (cancellationToken.UnsafeRegister(static state => ((Turn)state!).Cancel(), turn))
            {
                taken = await turn.Task.ConfigureAwait(false);
            }
        }
        finally
        {
            turn.StopTimer();
            lock (_gate)
            {
                if (turn.Aside) // settled: it changes only under this lock, before the turn's result
                {
                    _waitingAside--;
                }
            }
        }

        return taken; // a turn brought its place with it (LeaveTurn); otherwise no turn was handed to it, so it holds none
    }

    /// <summary>A connection waited <see cref="AsideAfter"/> for its turn holding its place: it waits aside now (its
    /// destination is slow to connect) until <see cref="MaxTurnWait"/>, or is refused when <see cref="MaxWaitingAside"/>
    /// already do. One that waited aside until <see cref="MaxTurnWait"/> is refused.</summary>
    private void WaitedTooLong(Turn turn)
    {
        lock (_gate)
        {
            if (turn.Task.IsCompleted || !_turns.TryGetValue(turn.Destination, out var waits))
            {
                return;
            }

            TimeSpan waited = TimeProvider.GetElapsedTime(turn.Started);
            if (turn.Aside || waited >= MaxTurnWait)
            {
                // Stays queued, skipped, as a cancelled wait; one that still holds its place gives it back when completed.
                turn.TrySetResult(SetupTurn.TimedOut);
                return;
            }

            if (_waitingAside >= MaxWaitingAside)
            {
                turn.TrySetResult(SetupTurn.Full); // stays queued, skipped; it still holds its place, given back when completed
                return;
            }

            MoveAside(turn, waits);
            turn.RestartTimer(MaxTurnWait - waited); // under the lock: before any result, so before the timer is disposed
        }

        Report(turn.Destination);
    }

    /// <summary>Under <see cref="_gate"/>: <paramref name="turn"/>'s connection gives its place back (the accept loop
    /// may take it for a connection to another destination) and waits aside; the turn will bring it a place.</summary>
    private void MoveAside(Turn turn, DestinationWaits waits)
    {
        turn.Aside = true;
        waits.Aside++;
        _waitingAside++;
        turn.Setup.GiveBackPlace();
    }

    /// <summary>Under <see cref="_gate"/>: appends <paramref name="setup"/>, which has just taken its turn holding a
    /// place, to the setups holding places (oldest first; intrusive, so that the fast path allocates nothing).</summary>
    private void Link(ConnectionSetup setup, IPEndPoint destination)
    {
        Debug.Assert(!setup.Linked, "linked once");
        setup.TurnTaken = TimeProvider.GetTimestamp();
        setup.Destination = destination;
        setup.Linked = true;
        setup.Older = _newestHolding;
        setup.Newer = null;
        if (_newestHolding is { } newest)
        {
            newest.Newer = setup;
        }
        else
        {
            _oldestHolding = setup;
        }

        _newestHolding = setup;
        if (setup.Older is null && _acceptsWaiting > 0 && !_stopped)
        {
            ArmSweep(AsideAfter); // the first holder while the accept loop waits (a sweep found none): swept once it is slow
        }
    }

    /// <summary>Under <see cref="_gate"/>: the sweep runs again after <paramref name="due"/>.</summary>
    private void ArmSweep(TimeSpan due)
    {
        _sweep ??= TimeProvider.CreateTimer(static state => ((ConnectionSetupLimit)state!).SweepAgain(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _sweep.Change(due, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Under <see cref="_gate"/>: removes <paramref name="setup"/> from the setups holding places, if it is there.</summary>
    private void Unlink(ConnectionSetup setup)
    {
        if (!setup.Linked)
        {
            return;
        }

        if (setup.Older is { } older)
        {
            older.Newer = setup.Newer;
        }
        else
        {
            _oldestHolding = setup.Newer;
        }

        if (setup.Newer is { } newer)
        {
            newer.Older = setup.Older;
        }
        else
        {
            _newestHolding = setup.Older;
        }

        setup.Older = setup.Newer = null;
        setup.Linked = false;
    }

    /// <summary>Under <see cref="_gate"/>, while an accept loop waits for a place: every setup that has held its turn and
    /// its place for <see cref="AsideAfter"/> (its destination is slow to connect: the parent's connect to one that
    /// never answers takes its whole connect timeout) gives its place back and goes on without one, set up aside, so
    /// that slow destinations, however many, never hold every place while connections to others wait in the listen
    /// backlog behind them (each destination holds at most <see cref="DestinationShare"/> places; two held them all).
    /// A setup set up aside holds no place: what bounds them is the connection limit, which counts each (and the
    /// share, per destination). The sweep comes back when the oldest left reaches <see cref="AsideAfter"/>.</summary>
    /// <returns>What to report outside the lock; null: no place was given back.</returns>
    private SetUpAsideReport? SweepSlowSetups()
    {
        if (_acceptsWaiting == 0 || _stopped)
        {
            return null;
        }

        long now = TimeProvider.GetTimestamp();
        int given = 0;
        List<IPEndPoint>? destinations = null;
        while (_oldestHolding is { } oldest)
        {
            TimeSpan held = TimeProvider.GetElapsedTime(oldest.TurnTaken, now);
            if (held < AsideAfter)
            {
                ArmSweep(AsideAfter - held);
                break;
            }

            Unlink(oldest);
            oldest.SetUpAside = true; // even when Complete took its place first: LeaveTurn, next under this lock, undoes it
            _setUpAside++;
            if (!oldest.GiveBackPlace())
            {
                continue; // Complete took it: it gives it back itself, and is not reported
            }

            given++;
            destinations ??= [];
            if (!destinations.Contains(oldest.Destination!))
            {
                destinations.Add(oldest.Destination!);
            }
        }

        return given == 0 ? null : new SetUpAsideReport(given, destinations!, _setUpAside);
    }

    /// <summary>The sweep's timer: the oldest setup holding a place has now held it for <see cref="AsideAfter"/>.</summary>
    private void SweepAgain()
    {
        SetUpAsideReport? slow;
        lock (_gate)
        {
            slow = SweepSlowSetups();
        }

        ReportSetUpAside(slow);
    }

    /// <summary>Reports what a sweep gave back (<see cref="SettingUpAside"/>), outside the lock.</summary>
    private void ReportSetUpAside(SetUpAsideReport? report)
    {
        if (report is null || SettingUpAside is not { } callback)
        {
            return;
        }

        try
        {
            callback(report);
        }
        catch (Exception)
        {
            // A log line that cannot be written must not cost the accept loop its place.
        }
    }

    private void Report(IPEndPoint destination)
    {
        try
        {
            WaitingForTurn?.Invoke(this, destination);
        }
        catch (Exception)
        {
            // A log line that cannot be written must not cost the connection its turn, nor the service a place.
        }
    }

    /// <summary>One connection's wait for its destination's turn; a wait that ended otherwise stays queued and is skipped.</summary>
    private sealed class Turn(ConnectionSetupLimit limit, ConnectionSetup setup, IPEndPoint destination, long started)
        : TaskCompletionSource<SetupTurn>(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        private ITimer? _timer;

        /// <summary>Gets when it began to wait (<see cref="TimeProvider.GetTimestamp"/>): <see cref="MaxTurnWait"/> counts from it.</summary>
        public long Started { get; } = started;

        public ConnectionSetup Setup { get; } = setup;

        public IPEndPoint Destination { get; } = destination;

        /// <summary>Gets or sets (under the limit's lock, before the result) whether the connection gave its place back
        /// to wait: the turn then brings it a place.</summary>
        public bool Aside { get; set; }

        public void StartTimer(TimeProvider time, TimeSpan due) =>
            _timer = time.CreateTimer(static state => ((Turn)state!).Expired(), this, due, Timeout.InfiniteTimeSpan);

        public void RestartTimer(TimeSpan due) => _timer?.Change(due, Timeout.InfiniteTimeSpan);

        public void StopTimer() => _timer?.Dispose();

        /// <summary>Stopped while waiting (under the limit's lock, as every result is set).</summary>
        public void Cancel()
        {
            lock (limit._gate)
            {
                TrySetResult(SetupTurn.Stopped);
            }
        }

        private void Expired() => limit.WaitedTooLong(this);
    }

    /// <summary>The connections waiting for one destination's turn, first come first served, and how many of them wait
    /// aside (while any does, the destination's further connections wait aside at once).</summary>
    private sealed class DestinationWaits
    {
        private readonly Queue<Turn> _queue = new();

        public int Aside { get; set; }

        public bool IsEmpty => _queue.Count == 0;

        public void Enqueue(Turn turn) => _queue.Enqueue(turn);

        public bool TryDequeue([NotNullWhen(true)] out Turn? turn)
        {
            if (!_queue.TryDequeue(out turn))
            {
                return false;
            }

            if (turn.Aside)
            {
                Aside--;
            }

            return true;
        }
    }

    /// <summary>Why a connection was refused with <paramref name="turn"/>, for its log line and audit record; the same
    /// for every refusal of a kind, so made once. <see cref="SetupTurn.Full"/>: "48 connections to it are being set up,
    /// its share of the places (enclave.max_pending_connections = 64, derived from 2 processors), and 194 connections
    /// (to any destination) wait aside for a turn, the most that may (16 per place, at most half of the connection
    /// limit)". <see cref="SetupTurn.TimedOut"/>: "48 connections to it are being set up, its share of the places (...),
    /// and its turn did not come within 10,000 ms, the longest a connection waits for one (tunnel.status_timeout_ms)".
    /// Null for the others.</summary>
    public string? RefusalText(SetupTurn turn) => turn switch
    {
        SetupTurn.Full => _fullText ??= string.Create(
            CultureInfo.InvariantCulture,
            $"{DestinationShare} connections to it are being set up, its share of the places {LimitText()}, and {MaxWaitingAside} connections (to any destination) wait aside for a turn, the most that may ({WaitingAsidePerPlace} per place, at most half of the connection limit)"),
        SetupTurn.TimedOut => _timedOutText ??= string.Create(
            CultureInfo.InvariantCulture,
            $"{DestinationShare} connections to it are being set up, its share of the places {LimitText()}, and its turn did not come within {MaxTurnWait.TotalMilliseconds:N0} ms, the longest a connection waits for one ({ConfigurationKeys.TunnelStatusTimeout.Path})"),
        _ => null,
    };

    /// <summary>The limit as logs name it: "(enclave.max_pending_connections = 64)" or "(… = 64, derived from 2 processors)".</summary>
    public string LimitText() => _derived
        ? string.Create(CultureInfo.InvariantCulture, $"({_setting} = {Limit}, derived from {Environment.ProcessorCount} processors)")
        : string.Create(CultureInfo.InvariantCulture, $"({_setting} = {Limit})");

    /// <summary>The limit as the start-up line names it: "enclave.max_pending_connections = 64" or "… = 64 (derived from
    /// 2 processors)".</summary>
    public string SettingText() => _derived
        ? string.Create(CultureInfo.InvariantCulture, $"{_setting} = {Limit} (derived from {Environment.ProcessorCount} processors)")
        : string.Create(CultureInfo.InvariantCulture, $"{_setting} = {Limit}");
}

/// <summary>
/// One accepted connection's place in a <see cref="ConnectionSetupLimit"/>, from accept until it is set up. The
/// handler completes it when the connection is set up (e.g. relaying starts); the listener completes it when the
/// handler ends, whatever happened; only the first completion gives the place back.
/// </summary>
internal sealed class ConnectionSetup
{
    /// <summary>A setup that holds no place (a listener without a limit; tests).</summary>
    public static readonly ConnectionSetup None = new(null);

    private readonly ConnectionSetupLimit? _limit;
    private int _holdsPlace;
    private int _complete;
    private IPEndPoint? _turn;
    private int _holdsTurn;

    internal ConnectionSetup(ConnectionSetupLimit? limit)
    {
        _limit = limit;
        _holdsPlace = limit is null ? 0 : 1;
        _complete = limit is null ? 1 : 0;
    }

    /// <summary>Gets whether the setup is complete: its place and its destination's turn given back (or it had none).</summary>
    public bool IsComplete => Volatile.Read(ref _complete) == 1;

    /// <summary>Takes the connection's turn among those to <paramref name="destination"/> being set up
    /// (<see cref="ConnectionSetupLimit.DestinationShare"/>), waiting aside for it while the destination has its share;
    /// <see cref="Complete"/> gives it back. At once for <see cref="None"/>.</summary>
    /// <param name="destination">The connection's original destination.</param>
    /// <param name="cancellationToken">Stops waiting (the proxy is stopping).</param>
    /// <returns>Whether the turn was taken; otherwise the connection is not set up (<see cref="SetupTurn"/>).</returns>
    public ValueTask<SetupTurn> TakeTurnAsync(IPEndPoint destination, CancellationToken cancellationToken)
    {
        if (_limit is null || IsComplete)
        {
            return new ValueTask<SetupTurn>(SetupTurn.Taken);
        }

        var taking = _limit.TakeTurnAsync(this, destination, cancellationToken);
        if (taking.IsCompletedSuccessfully)
        {
            SetupTurn turn = taking.Result;
            if (turn == SetupTurn.Taken)
            {
                Held(destination);
            }

            return new ValueTask<SetupTurn>(turn);
        }

        return HeldWhenTakenAsync(taking, destination);
    }

    /// <summary>Why <see cref="TakeTurnAsync"/> gave <paramref name="turn"/> (<see cref="ConnectionSetupLimit.RefusalText"/>).</summary>
    public string? RefusalText(SetupTurn turn) => _limit?.RefusalText(turn);

    /// <summary>Gives the place and the destination's turn back (both to the next connection waiting aside for the
    /// turn, when there is one); later calls do nothing.</summary>
    public void Complete()
    {
        if (Interlocked.Exchange(ref _complete, 1) == 1)
        {
            return;
        }

        bool holdsPlace = Interlocked.Exchange(ref _holdsPlace, 0) == 1; // false: it was set up aside (slow)
        if (Interlocked.Exchange(ref _holdsTurn, 0) == 1)
        {
            IPEndPoint destination = _turn!;
            _turn = null;
            if (_limit!.LeaveTurn(this, destination, holdsPlace))
            {
                return; // the place went with the turn
            }
        }

        if (holdsPlace)
        {
            _limit!.Return();
        }
    }

    private async ValueTask<SetupTurn> HeldWhenTakenAsync(ValueTask<SetupTurn> taking, IPEndPoint destination)
    {
        SetupTurn turn = await taking.ConfigureAwait(false);
        if (turn == SetupTurn.Taken)
        {
            Held(destination);
        }

        return turn;
    }

    private void Held(IPEndPoint destination)
    {
        Debug.Assert(Volatile.Read(ref _holdsTurn) == 0, "one turn per connection");
        _turn = destination;
        Volatile.Write(ref _holdsTurn, 1);
    }

    /// <summary>Gets or sets (under the limit's lock) the older neighbour among the setups holding their turn and a place.</summary>
    internal ConnectionSetup? Older { get; set; }

    /// <summary>Gets or sets (under the limit's lock) the newer neighbour among the setups holding their turn and a place.</summary>
    internal ConnectionSetup? Newer { get; set; }

    /// <summary>Gets or sets (under the limit's lock) whether it is among the setups holding their turn and a place.</summary>
    internal bool Linked { get; set; }

    /// <summary>Gets or sets (under the limit's lock) when it took its turn holding a place (<see cref="TimeProvider.GetTimestamp"/>).</summary>
    internal long TurnTaken { get; set; }

    /// <summary>Gets or sets (under the limit's lock) the destination whose turn it holds, while linked.</summary>
    internal IPEndPoint? Destination { get; set; }

    /// <summary>Gets or sets (under the limit's lock) whether it holds its turn without a place: it gave the place back
    /// as slow, or took the turn from one that had.</summary>
    internal bool SetUpAside { get; set; }

    /// <summary>Gives the place back: while the connection waits aside for its destination's turn, or when its setup
    /// is slow (set up aside). Nothing when it holds none (<see cref="Complete"/> took it first).</summary>
    /// <returns>Whether it held one: false when <see cref="Complete"/> took it first.</returns>
    internal bool GiveBackPlace()
    {
        if (Interlocked.Exchange(ref _holdsPlace, 0) == 1)
        {
            _limit!.Return();
            return true;
        }

        return false;
    }

    /// <summary>The connection holds a place again: the one handed to it with its destination's turn after it waited aside.</summary>
    internal void TookPlaceAgain() => Volatile.Write(ref _holdsPlace, 1);
}

/// <summary>What one sweep of <see cref="ConnectionSetupLimit"/> gave back, for its log line.</summary>
/// <param name="Given">How many setups gave their places back.</param>
/// <param name="Destinations">Their destinations, each once, in the order of their setups.</param>
/// <param name="SetUpAside">How many setups are set up aside now, these included.</param>
internal sealed record SetUpAsideReport(int Given, IReadOnlyList<IPEndPoint> Destinations, int SetUpAside)
{
    /// <summary>The destinations as a log line names them: at most <see cref="ConnectionSetupLimit.MaxDestinationsNamed"/>,
    /// then how many more ("198.18.2.1:80, 198.18.2.2:80 and 3 more").</summary>
    public string DestinationsText() => Destinations.Count <= ConnectionSetupLimit.MaxDestinationsNamed
        ? string.Join(", ", Destinations)
        : string.Create(
            CultureInfo.InvariantCulture,
            $"{string.Join(", ", Destinations.Take(ConnectionSetupLimit.MaxDestinationsNamed))} and {Destinations.Count - ConnectionSetupLimit.MaxDestinationsNamed} more");
}

/// <summary>What <see cref="ConnectionSetup.TakeTurnAsync"/> gave a connection.</summary>
internal enum SetupTurn
{
    /// <summary>The destination's turn (and a place): the connection is set up now.</summary>
    Taken,

    /// <summary>The service stopped while the connection waited: it is not set up.</summary>
    Stopped,

    /// <summary>Its destination had its share of the places and the most connections wait aside already: it is
    /// refused (reset at once, as at the connection limit).</summary>
    Full,

    /// <summary>Its turn did not come within <see cref="ConnectionSetupLimit.MaxTurnWait"/>: it is refused (reset).</summary>
    TimedOut,
}
