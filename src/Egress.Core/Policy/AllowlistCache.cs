using System.Collections.Concurrent;
using System.Net;

namespace Egress.Policy;

/// <summary>
/// Addresses learned from DNS answers to allowed names, each with the names it was learned from and their expiry
/// (the answer's TTL, at least <see cref="AllowlistCacheOptions.TtlFloor"/>, at most one day unless the floor is higher). An address is live until its latest
/// expiry plus <see cref="AllowlistCacheOptions.Grace"/>, then remembered as expired for
/// <see cref="AllowlistCacheOptions.ExpiredRetention"/> so denials can be explained. An address a connection was
/// allowed through stays live while that connection is open (held: open connections per address, counted per name
/// whose entry allowed each), and so does that name: a name counts while its own learning is live or a connection
/// through it is open, and gets the grace period after the last one closes. Expiry, pruning and eviction never remove
/// an address in use (nor a held name), and <see cref="AllowlistCacheOptions.MaxEntries"/> bounds the addresses not in use. IPv4-mapped IPv6
/// addresses are the same entry as their IPv4 address. Thread-safe: lookups take no lock and do not allocate; writes,
/// holds and releases are serialised; the walks over the whole cache (pruning, making room when it is full) read
/// without the lock and take it only for what they change, so a connection's hold never waits for a walk.
/// </summary>
public sealed class AllowlistCache
{
    /// <summary>The most names kept per address.</summary>
    internal const int MaxNamesPerAddress = 8;

    private static readonly long MaxTtlTicks = TimeSpan.FromSeconds(int.MaxValue).Ticks;

    /// <summary>Gets the longest an answer's TTL keeps an address live: 1 day (86,400 s), Unbound's
    /// <c>cache-max-ttl</c>. A TTL may be up to 2^31−1 s (RFC 2181 §8); kept whole, one answer would keep an address
    /// allowed for decades after its name moved away from it (to an address that may be someone else's by then). The
    /// floor (<see cref="AllowlistCacheOptions.TtlFloor"/>) still wins when it is set higher.</summary>
    internal static TimeSpan MaxTtl { get; } = TimeSpan.FromDays(1);

    /// <summary>How long an answer's TTL keeps an address live under a floor: cut to <see cref="MaxTtl"/>, then raised
    /// to <paramref name="floor"/> (the one place of that rule: <see cref="Learn"/>, and what <c>check</c> says).</summary>
    internal static TimeSpan Kept(TimeSpan ttl, TimeSpan floor) => TimeSpan.FromTicks(Math.Max(Math.Min(ttl.Ticks, MaxTtl.Ticks), floor.Ticks));

    private readonly ConcurrentDictionary<UInt128, LearnedAddress> _entries = new();

    /// <summary>Open connections per address in use, by name (changed under the write lock; absent when none).</summary>
    private readonly ConcurrentDictionary<UInt128, AddressUse> _inUse = new();
    private static readonly long PruneIntervalTicks = TimeSpan.FromMinutes(1).Ticks;

    private readonly Lock _writeLock = new();
    private long _lastPrune;
    private int _walking; // 1 while a walk to make room runs outside the lock (one at a time)
    private readonly TimeProvider _timeProvider;
    private readonly long _floorTicks;
    private readonly long _graceTicks;
    private readonly long _retentionTicks;
    private readonly int _maxEntries;
    private int _count;
    private int _inUseCount;
    private long _evictions;
    private long _version;
    private long _extensions;

    /// <summary>The addresses the size bound evicted while they were still allowed, with the name each was learned from,
    /// when, and until when it would have been allowed, so a denial can say so: evicted until then, expired for the
    /// retention after (the most recent <see cref="EvictedRemembered"/>). Changed under the write lock, read without it.</summary>
    private readonly ConcurrentDictionary<UInt128, (string Name, long EvictedAt, long AllowedUntil, long Sequence)> _evicted = new();
    private readonly Queue<(UInt128 Key, long Sequence)> _evictedOrder = new();
    private long _evictedSequence;

    /// <summary>How many evictions a denial can explain (about 80 KB at most).</summary>
    internal const int EvictedRemembered = 1024;

    private long _allowedEvictions;
    private long _evictionsWarned;
    private long _lastEvictionWarning = long.MinValue;

    private long _allowedDisplacements;
    private long _displacementsWarned;
    private long _lastDisplacementWarning = long.MinValue;
    private Displacement? _lastDisplaced;

    /// <summary>A name still allowed for <paramref name="Address"/> that <paramref name="By"/> took the place of
    /// (<see cref="MaxNamesPerAddress"/>).</summary>
    internal sealed record Displacement(string Name, IPAddress Address, string By);

    /// <summary>The shortest time between two <see cref="TryTakeEvictionWarning"/> claims, and between two
    /// <see cref="TryTakeDisplacementWarning"/> claims.</summary>
    internal static readonly TimeSpan EvictionWarningInterval = TimeSpan.FromMinutes(1);

    /// <summary>Creates a cache with default options.</summary>
    public AllowlistCache()
        : this(new AllowlistCacheOptions())
    {
    }

    /// <summary>Creates a cache.</summary>
    /// <param name="options">The settings; durations must not be negative and MaxEntries must be positive.</param>
    public AllowlistCache(AllowlistCacheOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.TimeProvider, nameof(options) + "." + nameof(options.TimeProvider));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.TtlFloor, TimeSpan.Zero, nameof(options) + "." + nameof(options.TtlFloor));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Grace, TimeSpan.Zero, nameof(options) + "." + nameof(options.Grace));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.ExpiredRetention, TimeSpan.Zero, nameof(options) + "." + nameof(options.ExpiredRetention));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxEntries, 1, nameof(options) + "." + nameof(options.MaxEntries));
        _timeProvider = options.TimeProvider;
        _floorTicks = Math.Min(options.TtlFloor.Ticks, MaxTtlTicks);
        _graceTicks = Math.Min(options.Grace.Ticks, MaxTtlTicks);
        _retentionTicks = Math.Min(options.ExpiredRetention.Ticks, MaxTtlTicks);
        _maxEntries = options.MaxEntries;
    }

    /// <summary>The number of addresses held (live and remembered expired ones).</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>How many addresses were removed to stay within <see cref="AllowlistCacheOptions.MaxEntries"/>.</summary>
    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>The size bound (<see cref="AllowlistCacheOptions.MaxEntries"/>).</summary>
    internal int MaxEntries => _maxEntries;

    /// <summary>
    /// Whether to warn now that the size bound evicted addresses that were still allowed: true at most once per
    /// <see cref="EvictionWarningInterval"/>, when such addresses were evicted since the last claim, with how many (not
    /// the expired ones, whose eviction denies nothing: a review). An app that kept one is denied it (the denial says it
    /// was evicted), so an operator needs to hear it.
    /// </summary>
    /// <param name="evicted">The evictions of allowed addresses since the last claim; 0 when false.</param>
    internal bool TryTakeEvictionWarning(out long evicted) =>
        TryClaimWarning(ref _allowedEvictions, ref _evictionsWarned, ref _lastEvictionWarning, out evicted);

    /// <summary>
    /// Claims the right to log that names still allowed lost their place at an address to newer ones
    /// (<see cref="MaxNamesPerAddress"/>), at most once per <see cref="EvictionWarningInterval"/>: how many since the last
    /// claim, and the last one. An app that kept the address for such a name is denied it until it resolves the name
    /// again, by the names left, so the denial alone does not explain itself.
    /// </summary>
    /// <param name="displaced">How many since the last claim; 0 when false.</param>
    /// <param name="last">The last one; null when false.</param>
    internal bool TryTakeDisplacementWarning(out long displaced, out Displacement? last)
    {
        bool claimed = TryClaimWarning(ref _allowedDisplacements, ref _displacementsWarned, ref _lastDisplacementWarning, out displaced);
        last = claimed ? Volatile.Read(ref _lastDisplaced) : null;
        return claimed && last is not null;
    }

    // One warning of a count at most once per EvictionWarningInterval, claimed by one caller; no clock read while the
    // count has not moved (the common case, on every answer learned from).
    private bool TryClaimWarning(ref long total, ref long warned, ref long lastWarning, out long count)
    {
        count = 0;
        long seen = Interlocked.Read(ref total);
        if (seen == Interlocked.Read(ref warned))
        {
            return false;
        }

        long now = _timeProvider.GetTimestamp();
        long last = Interlocked.Read(ref lastWarning);
        if ((last != long.MinValue && _timeProvider.GetElapsedTime(last, now) < EvictionWarningInterval)
            || Interlocked.CompareExchange(ref lastWarning, now, last) != last)
        {
            return false;
        }

        count = seen - Interlocked.Exchange(ref warned, seen);
        return count > 0;
    }

    /// <summary>The cache's clock: UTC ticks now.</summary>
    internal long Now => _timeProvider.GetUtcNow().UtcTicks;

    /// <summary>
    /// Records that <paramref name="name"/> resolved to <paramref name="address"/>. Learning again extends the expiry
    /// (never shortens it). When the cache is full, a new address first evicts the addresses past retention, else the
    /// ones whose allowance ends first (a batch of MaxEntries/64, at least one).
    /// </summary>
    /// <param name="name">The name that was asked; stored in lower case without a trailing dot. Not checked here: a policy
    /// (<see cref="EgressPolicy.Learn"/> checks before it learns) allows the address only through a name its own
    /// entries allow.</param>
    /// <param name="address">An address from the answer.</param>
    /// <param name="ttl">The record's TTL; cut to one day (86,400 s, as Unbound's <c>cache-max-ttl</c>), then raised to the floor.</param>
    public void Learn(string name, IPAddress address, TimeSpan ttl)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(address);
        _ = LearnCore(name, address, ttl, restoredExpiry: null);
    }

    /// <summary>
    /// As <see cref="Learn"/>, with the expiry an earlier run of this process learned (<see cref="Learned"/>, kept in a
    /// learned-addresses file across a restart) instead of a TTL: not raised to the floor, and possibly past (a name in
    /// its grace stays in it), but cut as a TTL is (at most a day from now, or the floor when that is longer). Extends,
    /// never shortens, what is known.
    /// </summary>
    /// <param name="name">As for <see cref="Learn"/>.</param>
    /// <param name="address">As for <see cref="Learn"/>.</param>
    /// <param name="expiresAt">When the name's allowance ends, before its grace (UTC ticks).</param>
    /// <returns>False when the address is new and the cache already holds <see cref="AllowlistCacheOptions.MaxEntries"/>
    /// addresses not in use: a restore makes no room (the file lists what matters most first, <see cref="Learned"/>),
    /// so the address is not restored.</returns>
    internal bool Restore(string name, IPAddress address, long expiresAt) => LearnCore(name, address, TimeSpan.Zero, expiresAt);

    /// <summary>How long a name stays allowed after its expiry (<see cref="AllowlistCacheOptions.Grace"/>), in ticks.</summary>
    internal long GraceTicks => _graceTicks;

    /// <summary>How many addresses an open connection holds now.</summary>
    internal int InUseCount => Volatile.Read(ref _inUseCount);

    /// <summary>A number that moves whenever an address or a name of one is learned, restored or replaced (not when one
    /// expires, nor when a known name's expiry moves: <see cref="Extensions"/>): a writer of the learned addresses
    /// rewrites them soon when it moved.</summary>
    internal long Version => Interlocked.Read(ref _version);

    /// <summary>A number that moves whenever a known name's expiry moves (learned again, or its grace started when the
    /// last connection through it closed): a writer rewrites for it less often than for <see cref="Version"/>.</summary>
    internal long Extensions => Interlocked.Read(ref _extensions);

    /// <summary>
    /// Every name that counts now by its own learning (its TTL or its grace) or is held by an open connection, with its
    /// address and expiry (UTC ticks): what a restarted process needs to allow what this one allows through DNS. A name
    /// held past its TTL gets the expiry <paramref name="heldFor"/> from now (a restart closes the connection, and its
    /// grace would start then; the writer's next refresh comes within that time and moves it on). The addresses open
    /// connections use come first: a restore into a full cache keeps what comes first (<see cref="Restore"/>), and these
    /// are what an application uses now, though their expiries are the nearest; when the cache holds more addresses
    /// than its bound, the others follow latest expiry first (those a restore skips are then those eviction would
    /// take). Walks the cache lazily, without the write lock: a learning that races the walk may be missed by it (its
    /// <see cref="Version"/> or <see cref="Extensions"/> moves once it is stored: read them before the walk).
    /// </summary>
    /// <param name="heldFor">How long a held name is written as allowed beyond now: the writer's refresh period.</param>
    internal IEnumerable<(IPAddress Address, string Name, long ExpiresAt)> Learned(TimeSpan heldFor)
    {
        long now = Now;
        long heldUntil = now + heldFor.Ticks;
        var first = new HashSet<UInt128>();
        foreach (var (key, use) in _inUse)
        {
            if (_entries.TryGetValue(key, out LearnedAddress? known) && first.Add(key))
            {
                foreach (var learned in Counting(key, known, use))
                {
                    yield return learned;
                }
            }
        }

        // Then the rest; when the cache holds more than its bound (addresses in use do not count against it), so that a
        // restore cannot take them all, those whose allowance ends last first, as eviction would keep them.
        var rest = _entries.Where(pair => !first.Contains(pair.Key));
        if (Volatile.Read(ref _count) > _maxEntries)
        {
            rest = rest.ToList().OrderByDescending(pair => pair.Value.Latest.ExpiresAt);
        }

        foreach (var (key, known) in rest)
        {
            foreach (var learned in Counting(key, known, UseOf(key)))
            {
                yield return learned;
            }
        }

        IEnumerable<(IPAddress Address, string Name, long ExpiresAt)> Counting(UInt128 key, LearnedAddress known, AddressUse? use)
        {
            IPAddress? address = null;
            foreach (LearnedName name in known.Names)
            {
                bool held = use is not null && use.Holds(name.Name);
                if (now < name.ExpiresAt + _graceTicks || held)
                {
                    address ??= AddressValue.ToAddress(key);
                    yield return (address, name.Name, held ? Math.Max(name.ExpiresAt, heldUntil) : name.ExpiresAt);
                }
            }
        }
    }

    /// <returns>False only for a restore that found no room (<see cref="Restore"/>).</returns>
    private bool LearnCore(string name, IPAddress address, TimeSpan ttl, long? restoredExpiry)
    {
        string normalized = (name.EndsWith('.') ? name[..^1] : name).ToLowerInvariant();
        UInt128 key = AddressValue.Of(address);

        // Room first, found outside the write lock: the walk reads the whole cache (milliseconds at 65,536 entries),
        // and connections take the lock to hold and release addresses (Hold, Release), on threads that must not wait
        // that long (an epoll thread, the accepting thread). Only the removals it chose take the lock, each re-checked.
        // A restore makes none (Restore).
        bool restoring = restoredExpiry is not null;
        if (!restoring && IsFull && !_entries.ContainsKey(key) && Interlocked.CompareExchange(ref _walking, 1, 0) == 0)
        {
            try
            {
                EvictOutsideLock(Now);
            }
            finally
            {
                Volatile.Write(ref _walking, 0);
            }
        }

        bool pruneDue = false, noRoom = false;
        long now;
        lock (_writeLock)
        {
            now = Now;
            if (now - _lastPrune >= PruneIntervalTicks)
            {
                // Amortised upkeep: at most once a minute, the learner forgets what is past retention (below, outside the lock).
                _lastPrune = now;
                pruneDue = true;
            }

            // A restored expiry is capped as a TTL is: a file (or the clock it was written by) must not keep an address
            // allowed for longer than an answer could.
            long expiresAt = restoredExpiry is { } restored
                ? Math.Min(restored, now + Math.Max(MaxTtl.Ticks, _floorTicks))
                : now + Kept(ttl, TimeSpan.FromTicks(_floorTicks)).Ticks;
            if (_entries.TryGetValue(key, out LearnedAddress? known))
            {
                LearnedAddress changed = known.With(normalized, expiresAt, ForgetThrough(now), MaxNamesPerAddress, UseOf(key), out LearnedName? replaced);
                _entries[key] = changed;
                if (replaced is { } gone && CountsAt(gone, null, now))
                {
                    // A name still allowed lost its place to this one (MaxNamesPerAddress): an app that kept the address
                    // for it is denied it from now on, so an operator needs to hear it (a robustness trial).
                    Volatile.Write(ref _lastDisplaced, new Displacement(gone.Name, address, normalized));
                    Interlocked.Increment(ref _allowedDisplacements);
                }

                if (!ReferenceEquals(changed, known))
                {
                    // Counted once stored (a writer reads the count, then the cache). A name that still counted only
                    // moved its expiry; one past its grace (remembered for the retention, never written) is learned
                    // anew, as a new name is.
                    bool counted = known.TryGet(normalized, out LearnedName before) && CountsAt(before, UseOf(key), now);
                    Interlocked.Increment(ref counted && changed.Has(normalized) ? ref _extensions : ref _version);
                }
            }
            else if (restoring && _count - _inUseCount >= _maxEntries)
            {
                noRoom = true; // a restore makes no room (above)
            }
            else
            {
                if (_count - _inUseCount >= _maxEntries)
                {
                    // Still full: another learner took the room made above, or its walk was running. The bound holds.
                    EvictLocked(now);
                }

                _entries[key] = LearnedAddress.Create(normalized, expiresAt);
                Interlocked.Increment(ref _count);
                _evicted.TryRemove(key, out _);
                Interlocked.Increment(ref _version);
            }
        }

        if (pruneDue)
        {
            _ = PruneOutsideLock(now);
        }

        return !noRoom;
    }

    private bool IsFull => Volatile.Read(ref _count) - Volatile.Read(ref _inUseCount) >= _maxEntries;

    /// <summary>Called when a walk over the whole cache begins, outside the write lock (a test's seam).</summary>
    internal Action? WalkStarting { get; set; }

    /// <summary>What the cache knows about <paramref name="address"/>. Takes no lock and does not allocate.</summary>
    /// <param name="address">The destination address.</param>
    /// <returns>The state, the best name and the time until expiry or since it.</returns>
    internal CacheLookup Lookup(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        return LookupAt(AddressValue.Of(address), Now);
    }

    /// <summary>
    /// Looks <paramref name="address"/> up and, when <paramref name="name"/> still counts for it (its learning is live,
    /// or an open connection holds it, <see cref="Counts"/>), counts one more open connection through that name and
    /// through those of <paramref name="others"/> that still count, atomically with expiry and eviction: the address
    /// and the names stay live until the returned hold is released, and each name for the grace period after its last
    /// release.
    /// </summary>
    /// <param name="address">The destination address.</param>
    /// <param name="name">The name the connection's decision named (as the address's names spell it).</param>
    /// <param name="others">The other names whose entries allow the connection too, or null: the connection may be to
    /// any of them (a review: holding only the name learned first let a pooled connection to <c>api.example.com</c>
    /// keep <c>web.example.com</c> counting instead, and a ClientHello naming <c>api.example.com</c> was refused).</param>
    /// <param name="hold">The hold to release when the connection ends (exactly once: later calls do nothing); null
    /// when the name no longer counts (the address may have expired, or only the name).</param>
    /// <returns>Held: what the cache knew of the address through <paramref name="name"/> before the hold was taken
    /// (<see cref="LookupThrough"/>). Not held: what it knows of the address (<see cref="Lookup"/>).</returns>
    internal CacheLookup Hold(IPAddress address, string name, string[]? others, out AddressHold? hold)
    {
        ArgumentNullException.ThrowIfNull(address);
        ArgumentNullException.ThrowIfNull(name);
        UInt128 key = AddressValue.Of(address);
        lock (_writeLock)
        {
            long now = Now;
            CacheLookup lookup = LookupAt(key, now);
            AddressUse? use = UseOf(key);
            if (lookup.State != CacheState.Live || !_entries.TryGetValue(key, out LearnedAddress? known)
                || !TryFindCounting(known, use, name, now, out LearnedName learned))
            {
                hold = null;
                return lookup;
            }

            lookup = LookupThroughAt(learned, use, now);
            string[]? alsoHeld = others is null ? null : StillCounting(known, use, others, now);
            if (use is not null)
            {
                use.Add(learned.Name, alsoHeld);
            }
            else
            {
                _inUse[key] = new AddressUse(learned.Name, alsoHeld);
                _inUseCount++;
            }

            hold = new AddressHold(this, key, learned.Name, alsoHeld);
            return lookup;
        }
    }

    /// <summary><paramref name="names"/> spelled as <paramref name="known"/>'s names, those that count at
    /// <paramref name="now"/>; null when none does. The same array when all do as spelled.</summary>
    private string[]? StillCounting(LearnedAddress known, AddressUse? use, string[] names, long now)
    {
        bool same = true;
        foreach (string name in names)
        {
            same &= TryFindCounting(known, use, name, now, out LearnedName learned) && ReferenceEquals(learned.Name, name);
        }

        if (same)
        {
            return names; // as it always is but for a name that stopped counting since the decision
        }

        List<string> counting = [];
        foreach (string name in names)
        {
            if (TryFindCounting(known, use, name, now, out LearnedName learned))
            {
                counting.Add(learned.Name);
            }
        }

        return counting.Count > 0 ? [.. counting] : null;
    }

    /// <summary>The number of open connections through <paramref name="address"/> that hold it.</summary>
    internal int ConnectionsThrough(IPAddress address) => UseOf(AddressValue.Of(address))?.Connections ?? 0;

    /// <summary>The open connections holding <paramref name="address"/>, by name; null when none.</summary>
    internal AddressUse? UseOf(IPAddress address) => UseOf(AddressValue.Of(address));

    private AddressUse? UseOf(UInt128 key) => _inUse.TryGetValue(key, out AddressUse? use) ? use : null;

    /// <summary>
    /// Whether <paramref name="name"/>, one of an address's names, counts for a decision about the address now: while
    /// its own learning is live (its TTL, plus the grace period), or while a connection allowed through it is open
    /// (<paramref name="use"/>, from <see cref="UseOf(IPAddress)"/>). A name that counts lends its entry's ports and
    /// its server name; one that does not lends nothing, whatever keeps the address live (red-team trials: an expired
    /// name lent its port because another name had been learned, or because a connection through another name held
    /// the address).
    /// </summary>
    /// <remarks>Lock-free: <paramref name="name"/> may have been read just before the last release through it, which
    /// starts its grace (<see cref="Release"/> publishes the new expiry before the count falls). So when the name is
    /// neither live as read nor held, its expiry is read again: a reader that sees the hold gone then sees the grace
    /// (a review: a pool's reconnect racing the close of its last connection was denied).</remarks>
    /// <param name="address">The address <paramref name="name"/> was read from.</param>
    /// <param name="name">One of its names, as read (<see cref="NamesOf"/>); when read again, the name as read again.</param>
    /// <param name="use">Its open connections, read before its names or after (<see cref="UseOf(IPAddress)"/>).</param>
    internal bool Counts(IPAddress address, ref LearnedName name, AddressUse? use)
    {
        long now = Now;
        if (CountsAt(name, use, now))
        {
            return true;
        }

        if (ReadAgain(AddressValue.Of(address), name) is { } again && CountsAt(again, null, now))
        {
            name = again;
            return true;
        }

        return false;
    }

    /// <summary>The name spelled as <paramref name="name"/> in the address's entry now, when its expiry has changed since
    /// <paramref name="name"/> was read; null otherwise.</summary>
    private LearnedName? ReadAgain(UInt128 key, LearnedName name)
    {
        if (!_entries.TryGetValue(key, out LearnedAddress? known))
        {
            return null;
        }

        IReadOnlyList<LearnedName> names = known.Names;
        for (int i = 0; i < names.Count; i++)
        {
            if (string.Equals(names[i].Name, name.Name, StringComparison.OrdinalIgnoreCase))
            {
                return names[i].ExpiresAt != name.ExpiresAt ? names[i] : null;
            }
        }

        return null;
    }

    private bool CountsAt(LearnedName name, AddressUse? use, long now) =>
        now < name.ExpiresAt + _graceTicks || (use is not null && use.Holds(name.Name));

    /// <summary>The name spelled <paramref name="name"/> among <paramref name="known"/>'s, when it counts at
    /// <paramref name="now"/> (<see cref="Counts"/>); false when it does not or the address has no such name.</summary>
    private bool TryFindCounting(LearnedAddress known, AddressUse? use, string name, long now, out LearnedName learned)
    {
        IReadOnlyList<LearnedName> names = known.Names; // indexed: no enumerator is allocated
        for (int i = 0; i < names.Count; i++)
        {
            if (string.Equals(names[i].Name, name, StringComparison.OrdinalIgnoreCase))
            {
                learned = names[i];
                return CountsAt(learned, use, now);
            }
        }

        learned = default;
        return false;
    }

    /// <summary>
    /// What the cache knows of an address through <paramref name="name"/>, one of its names that counts: live by that
    /// name's own TTL (the time until it expires), else in use by the connections open through that name, else in the
    /// name's grace (the grace left). A decision through a name that is not the address's latest tells that name's
    /// expiry, not the latest's. Not meaningful for a name that does not count.
    /// </summary>
    /// <param name="name">One of the address's names (<see cref="NamesOf"/>).</param>
    /// <param name="use">The address's open connections (<see cref="UseOf(IPAddress)"/>), or null.</param>
    internal CacheLookup LookupThrough(LearnedName name, AddressUse? use) => LookupThroughAt(name, use, Now);

    private CacheLookup LookupThroughAt(LearnedName name, AddressUse? use, long now)
    {
        int connections = use?.ConnectionsThrough(name.Name) ?? 0;
        if (now < name.ExpiresAt)
        {
            return new CacheLookup(CacheState.Live, name.Name, inGrace: false, TimeSpan.FromTicks(name.ExpiresAt - now), connections);
        }

        if (connections > 0)
        {
            return new CacheLookup(CacheState.Live, name.Name, inGrace: false, TimeSpan.Zero, connections, inUse: true);
        }

        long graceEnds = name.ExpiresAt + _graceTicks;
        return new CacheLookup(CacheState.Live, name.Name, inGrace: true, TimeSpan.FromTicks(Math.Max(0, graceEnds - now)));
    }

    /// <summary>Ends one connection's hold through <paramref name="name"/> and <paramref name="others"/>: the last one
    /// through a name starts that name's grace period (its TTL counts as expired now at the latest); the address's other
    /// names keep their own.</summary>
    internal void Release(UInt128 key, string name, string[]? others)
    {
        lock (_writeLock)
        {
            if (!_inUse.TryGetValue(key, out AddressUse? use))
            {
                return;
            }

            // The grace first, then the count: a lock-free reader reads the hold before it reads the expiry again
            // (Counts, LookupAt), so one that sees the hold gone sees the grace.
            StartGraceIfLast(key, use, name);
            foreach (string other in others ?? [])
            {
                StartGraceIfLast(key, use, other);
            }

            use.Remove(name, others);
            if (use.Connections == 0)
            {
                _inUse.TryRemove(key, out _);
                _inUseCount--;
            }
        }
    }

    private void StartGraceIfLast(UInt128 key, AddressUse use, string name)
    {
        if (use.IsLast(name) && _entries.TryGetValue(key, out LearnedAddress? known))
        {
            LearnedAddress touched = known.Touch(name, Now);
            _entries[key] = touched;
            if (!ReferenceEquals(touched, known))
            {
                Interlocked.Increment(ref _extensions); // its grace starts now: a restart should find it so
            }
        }
    }

    private CacheLookup LookupAt(UInt128 key, long now)
    {
        // The connections before the entry: the last release publishes its grace before its count falls (Release).
        int connections = UseOf(key)?.Connections ?? 0;
        if (!_entries.TryGetValue(key, out LearnedAddress? known))
        {
            // Not held: evicted by the size bound while still allowed (said, so the operator knows what to raise), as
            // long as it would still have been allowed; after that, expired (as it would have been), until retention.
            if (!_evicted.TryGetValue(key, out var evicted))
            {
                return default;
            }

            return now < evicted.AllowedUntil
                ? new CacheLookup(CacheState.Evicted, evicted.Name, inGrace: false, TimeSpan.FromTicks(now - evicted.EvictedAt))
                : now - evicted.AllowedUntil < _retentionTicks
                    ? new CacheLookup(CacheState.Expired, evicted.Name, inGrace: false, TimeSpan.FromTicks(now - evicted.AllowedUntil))
                    : default;
        }

        LearnedName latest = known.Latest;
        long graceEnds = latest.ExpiresAt + _graceTicks;
        if (now < latest.ExpiresAt)
        {
            return new CacheLookup(CacheState.Live, latest.Name, inGrace: false, TimeSpan.FromTicks(latest.ExpiresAt - now), connections);
        }

        if (connections > 0)
        {
            return new CacheLookup(CacheState.Live, latest.Name, inGrace: false, TimeSpan.Zero, connections, inUse: true);
        }

        if (now < graceEnds)
        {
            return new CacheLookup(CacheState.Live, latest.Name, inGrace: true, TimeSpan.FromTicks(graceEnds - now));
        }

        return now - graceEnds < _retentionTicks
            ? new CacheLookup(CacheState.Expired, latest.Name, inGrace: false, TimeSpan.FromTicks(now - graceEnds))
            : default;
    }

    /// <summary>
    /// Removes addresses and names expired for longer than the retention. <see cref="Learn"/> also does this by itself,
    /// at most once a minute; call it to forget sooner.
    /// </summary>
    /// <returns>The number of addresses removed.</returns>
    public int Prune() => PruneOutsideLock(Now);

    /// <summary>Walks the cache without the write lock, and takes it only to forget what the walk found past retention,
    /// re-checked under it (a connection may have taken a hold, or a learner renewed the entry, since).</summary>
    private int PruneOutsideLock(long now)
    {
        WalkStarting?.Invoke();
        long forgetThrough = ForgetThrough(now);
        int removed = 0;
        foreach (var (key, seen) in _entries)
        {
            if (_inUse.ContainsKey(key) || ReferenceEquals(seen.Forget(forgetThrough), seen))
            {
                continue; // in use (kept whole, its grace starts when the last connection ends), or nothing to forget
            }

            lock (_writeLock)
            {
                if (_inUse.ContainsKey(key) || !_entries.TryGetValue(key, out LearnedAddress? known))
                {
                    continue;
                }

                LearnedAddress? kept = known.Forget(forgetThrough);
                if (kept is null)
                {
                    Remove(key);
                    removed++;
                }
                else if (!ReferenceEquals(kept, known))
                {
                    _entries[key] = kept;
                }
            }
        }

        return removed;
    }

    /// <summary>
    /// The other addresses <paramref name="name"/> resolved to that are still live for it (its TTL plus grace, or a
    /// connection through it that is open, <see cref="Counts"/>): the ones of <paramref name="except"/>'s family first, at most <paramref name="max"/>. Scans the
    /// cache (O(entries)); meant for the rare failover path, not for every connection.
    /// </summary>
    /// <param name="name">A name the addresses were learned from (any case, trailing dot ignored).</param>
    /// <param name="except">The address already tried; never returned.</param>
    /// <param name="max">The most addresses returned.</param>
    internal List<IPAddress> OtherAddressesOf(string name, IPAddress except, int max)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(except);
        var found = new List<IPAddress>();
        if (max <= 0)
        {
            return found;
        }

        string normalized = name.EndsWith('.') ? name[..^1] : name;
        UInt128 exceptKey = AddressValue.Of(except);
        bool exceptIsV4 = AddressValue.IsIPv4(exceptKey);
        var otherFamily = new List<IPAddress>();
        long now = Now;
        foreach (var (key, known) in _entries)
        {
            if (key == exceptKey || !TryFindCounting(known, UseOf(key), normalized, now, out _))
            {
                continue;
            }

            (AddressValue.IsIPv4(key) == exceptIsV4 ? found : otherFamily).Add(AddressValue.ToAddress(key));
        }

        found.AddRange(otherFamily);
        return found.Count > max ? found[..max] : found;
    }

    internal IReadOnlyList<LearnedName> NamesOf(IPAddress address) =>
        _entries.TryGetValue(AddressValue.Of(address), out LearnedAddress? known) ? known.Names : [];

    /// <summary>Names expiring at or before this tick are past grace and retention.</summary>
    private long ForgetThrough(long now) => now - _graceTicks - _retentionTicks;

    /// <summary>Makes room as <see cref="EvictLocked"/> does, choosing outside the write lock and removing under it.</summary>
    private void EvictOutsideLock(long now)
    {
        WalkStarting?.Invoke();
        var chosen = ChooseEvictions(now);
        lock (_writeLock)
        {
            RemoveChosen(chosen.Forgotten, chosen.Earliest);
        }
    }

    /// <summary>Makes room under the write lock, for a learner that still finds the cache full there (the bound is never
    /// exceeded): every address past retention, else a batch of MaxEntries/64 whose allowance ends first.</summary>
    private void EvictLocked(long now)
    {
        var chosen = ChooseEvictions(now);
        RemoveChosen(chosen.Forgotten, chosen.Earliest);
    }

    /// <summary>Under the write lock: removes the addresses past retention a walk chose, else (none of them still
    /// there unchanged) its batch; each only if it is still the entry the walk saw and not in use.</summary>
    private void RemoveChosen(List<(UInt128 Key, LearnedAddress Seen)> forgotten, PriorityQueue<(UInt128 Key, LearnedAddress Seen), long> earliest)
    {
        long evicted = 0;
        foreach ((UInt128 key, LearnedAddress seen) in forgotten)
        {
            evicted += RemoveIfUnchanged(key, seen) ? 1 : 0;
        }

        if (evicted == 0)
        {
            long now = Now;
            while (earliest.TryDequeue(out var next, out _))
            {
                if (RemoveIfUnchanged(next.Key, next.Seen))
                {
                    evicted++;
                    if (now < next.Seen.Latest.ExpiresAt + _graceTicks)
                    {
                        // Still allowed when it went: an app may well use it. (An expired one is denied either way.)
                        RememberEvicted(next.Key, next.Seen.Latest.Name, now, next.Seen.Latest.ExpiresAt + _graceTicks);
                    }
                }
            }
        }

        Interlocked.Add(ref _evictions, evicted);
    }

    private (List<(UInt128 Key, LearnedAddress Seen)> Forgotten, PriorityQueue<(UInt128 Key, LearnedAddress Seen), long> Earliest) ChooseEvictions(long now)
    {
        long forgetThrough = ForgetThrough(now);
        int batch = Math.Max(1, _maxEntries / 64);
        var forgotten = new List<(UInt128, LearnedAddress)>();
        var earliest = new PriorityQueue<(UInt128 Key, LearnedAddress Seen), long>(batch + 1, Comparer<long>.Create((a, b) => b.CompareTo(a)));
        foreach (var (key, known) in _entries)
        {
            if (_inUse.ContainsKey(key))
            {
                continue; // never evicted while in use; MaxEntries bounds the addresses not in use
            }

            long expiresAt = known.Latest.ExpiresAt;
            if (expiresAt <= forgetThrough)
            {
                forgotten.Add((key, known));
            }
            else if (earliest.Count < batch)
            {
                earliest.Enqueue((key, known), expiresAt);
            }
            else if (earliest.TryPeek(out _, out long latestKept) && expiresAt < latestKept)
            {
                earliest.EnqueueDequeue((key, known), expiresAt);
            }
        }

        return (forgotten, earliest);
    }

    /// <summary>Under the write lock: remembers that the size bound evicted <paramref name="key"/>, learned from
    /// <paramref name="name"/>, forgetting the oldest such record beyond <see cref="EvictedRemembered"/>.</summary>
    private void RememberEvicted(UInt128 key, string name, long now, long allowedUntil)
    {
        long sequence = ++_evictedSequence;
        _evicted[key] = (name, now, allowedUntil, sequence);
        Interlocked.Increment(ref _allowedEvictions);
        _evictedOrder.Enqueue((key, sequence));
        while (_evictedOrder.Count > EvictedRemembered)
        {
            // An address evicted again since has a later record, which stays.
            var (oldest, itsSequence) = _evictedOrder.Dequeue();
            if (_evicted.TryGetValue(oldest, out var record) && record.Sequence == itsSequence)
            {
                _evicted.TryRemove(oldest, out _);
            }
        }
    }

    /// <summary>Removes <paramref name="key"/> (under the write lock) if it is still the entry a walk saw and not in use.</summary>
    private bool RemoveIfUnchanged(UInt128 key, LearnedAddress seen)
    {
        if (_inUse.ContainsKey(key) || !_entries.TryGetValue(key, out LearnedAddress? current) || !ReferenceEquals(current, seen))
        {
            return false;
        }

        Remove(key);
        return true;
    }

    private void Remove(UInt128 key)
    {
        if (_entries.TryRemove(key, out _))
        {
            Interlocked.Decrement(ref _count);
        }
    }
}
