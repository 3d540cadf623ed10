namespace Egress.Policy;

/// <summary>The answer of <see cref="AllowlistCache.Lookup"/>.</summary>
internal readonly struct CacheLookup
{
    internal CacheLookup(CacheState state, string name, bool inGrace, TimeSpan time, int connections = 0, bool inUse = false)
    {
        InUse = inUse;
        State = state;
        Name = name;
        InGrace = inGrace;
        Time = time;
        Connections = connections;
    }

    /// <summary>Live, expired, evicted or never learned.</summary>
    public CacheState State { get; }

    /// <summary>
    /// The name the address was learned from: among its names the one expiring last (a live one when any is live,
    /// else the most recently expired); for a lookup through one name (AllowlistCache.LookupThrough, a hold taken), that
    /// name; null when never learned.
    /// </summary>
    public string? Name { get; }

    /// <summary>True when live only thanks to the grace period (the expiry has passed).</summary>
    public bool InGrace { get; }

    /// <summary>The open connections allowed through the address that hold it live (see AllowlistCache.Hold); for a
    /// lookup through one name, those through that name.</summary>
    internal int Connections { get; }

    /// <summary>True when live only because connections are open through it (its TTL has expired).</summary>
    internal bool InUse { get; }

    /// <summary>
    /// Live: the time until expiry (zero when live only because it is in use), or when <see cref="InGrace"/> the grace left. Expired: the time since grace ended.
    /// Evicted: the time since the eviction. Never learned: zero.
    /// </summary>
    public TimeSpan Time { get; }
}
