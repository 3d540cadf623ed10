namespace Egress.Dns;

/// <summary>
/// The tunnel DNS streams open on one gateway, at most <see cref="DnsStreamLimits.MaxStreams"/>. At the limit a new
/// stream takes the place of an open one, which is closed, rather than being refused: first of one that has not yet
/// had a query the parent forwarded upstream (the oldest such), else of the one idle longest (no query in flight, none
/// forwarded for at least <see cref="MinIdleToGiveUp"/>). Only a forwarded query is activity: a second red-team round
/// kept every place "busy" with a query for a denied name on each stream every second (answered NXDOMAIN by the
/// parent itself, nothing upstream), or simply by opening new streams faster than one place a second. The parent cannot tell the enclave's DNS
/// forwarder from any other process in the enclave that opens the tunnel (on a Nitro parent any enclave process can
/// connect to the VSOCK port), and a refusal at the limit let one that held every DNS stream, with a query on each now
/// and then, take the forwarder's places as its streams closed when idle: every query of every application in the
/// enclave was answered SERVFAIL for as long as it wished (a red-team trial, 6 December 2026). With places given up
/// by idleness, a stream busy with queries keeps its place, and a new one finds a place as long as any stream idles.
/// Thread-safe.
/// </summary>
/// <param name="time">The clock of the streams' idleness.</param>
internal sealed class DnsStreamSlots(TimeProvider time)
{
    /// <summary>How long an open stream must have been without a query (and with none in flight) before a new stream
    /// may take its place: a stream is not closed under a query its owner is about to send.</summary>
    public static readonly TimeSpan MinIdleToGiveUp = TimeSpan.FromSeconds(1);

    private readonly List<DnsStreamSlot> _open = [];

    /// <summary>Gets how many streams hold a place.</summary>
    public int Count
    {
        get
        {
            lock (_open)
            {
                return _open.Count;
            }
        }
    }

    /// <summary>A place for a new stream: a free one while fewer than <paramref name="max"/> are open, else the place of
    /// the stream idle longest (<paramref name="gaveUp"/>, now asked to close), else none.</summary>
    /// <param name="max">The most streams open at once.</param>
    /// <param name="gaveUp">The stream whose place was taken, or null.</param>
    /// <returns>The new stream's place (give it back with <see cref="Exit"/>), or null when every open stream is busy
    /// or idle for less than <see cref="MinIdleToGiveUp"/>: the new stream is refused.</returns>
    public DnsStreamSlot? TryEnter(int max, out DnsStreamSlot? gaveUp)
    {
        gaveUp = null;
        long now = time.GetTimestamp();
        DnsStreamSlot slot;
        lock (_open)
        {
            if (_open.Count >= max)
            {
                foreach (DnsStreamSlot open in _open)
                {
                    if (open.InFlight == 0 && (!open.Forwarded || time.GetElapsedTime(open.LastActivity, now) >= MinIdleToGiveUp)
                        && (gaveUp is null || (gaveUp.Forwarded, open.Forwarded) switch
                        {
                            (true, false) => true, // a stream with nothing forwarded yet goes before any that had
                            (false, true) => false,
                            _ => open.LastActivity < gaveUp.LastActivity,
                        }))
                    {
                        gaveUp = open;
                    }
                }

                if (gaveUp is null)
                {
                    return null;
                }

                _open.Remove(gaveUp);
            }

            slot = new DnsStreamSlot(time, now);
            _open.Add(slot);
        }

        gaveUp?.GiveUp(time.GetElapsedTime(gaveUp.LastActivity, now)); // outside the lock: its stream's end runs from here
        return slot;
    }

    /// <summary>Gives back the place of a stream that ended (nothing when its place was taken already).</summary>
    /// <param name="slot">Its place.</param>
    public void Exit(DnsStreamSlot slot)
    {
        lock (_open)
        {
            _open.Remove(slot);
        }
    }
}

/// <summary>The place of one open tunnel DNS stream: when it last had a query forwarded upstream, how many are in flight,
/// and whether a new stream took its place (<see cref="GivenUp"/>: it is to close).</summary>
internal sealed class DnsStreamSlot : IDisposable
{
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _givenUp = new();
    private long _lastActivity;
    private int _inFlight;
    private int _forwarded;

    internal DnsStreamSlot(TimeProvider time, long opened)
    {
        _time = time;
        _lastActivity = opened;
    }

    /// <summary>Gets when the stream was opened or last had a query forwarded upstream (a <see cref="TimeProvider"/> timestamp).</summary>
    public long LastActivity => Volatile.Read(ref _lastActivity);

    /// <summary>Gets whether any of its queries was forwarded upstream.</summary>
    public bool Forwarded => Volatile.Read(ref _forwarded) != 0;

    /// <summary>Gets how many of its queries are being answered.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Gets a token cancelled when a new stream took this one's place.</summary>
    public CancellationToken GivenUpToken => _givenUp.Token;

    /// <summary>Gets whether a new stream took this one's place.</summary>
    public bool GivenUp => _givenUp.IsCancellationRequested;

    /// <summary>Gets how long it had been idle when its place was taken: since its last forwarded query, or since it
    /// opened when it had none.</summary>
    public TimeSpan IdleWhenGivenUp { get; private set; }

    /// <summary>Gets which stream was closed, in words, for the line that says so (event 218).</summary>
    public string GivenUpText => Forwarded
        ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"the one idle longest ({IdleWhenGivenUp.TotalSeconds:0.#} s since its last query went upstream)")
        : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"one that had no query forwarded upstream yet (open {IdleWhenGivenUp.TotalSeconds:0.#} s)");

    /// <summary>A query of the stream is being answered.</summary>
    public void QueryStarted() => Interlocked.Increment(ref _inFlight);

    /// <summary>A query of the stream was answered (or dropped).</summary>
    /// <param name="forwarded">Whether it went upstream (its name allowed, the query well-formed): only that is activity.</param>
    public void QueryEnded(bool forwarded)
    {
        if (forwarded)
        {
            Volatile.Write(ref _lastActivity, _time.GetTimestamp());
            Volatile.Write(ref _forwarded, 1);
        }

        Interlocked.Decrement(ref _inFlight);
    }

    /// <summary>Asks the stream to close: a new stream took its place.</summary>
    internal void GiveUp(TimeSpan idle)
    {
        IdleWhenGivenUp = idle;
        try
        {
            _givenUp.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Its stream ended meanwhile.
        }
    }

    /// <inheritdoc />
    public void Dispose() => _givenUp.Dispose();
}
