namespace Egress.Policy;

/// <summary>What an <see cref="AllowlistCache"/> knows about an address.</summary>
internal enum CacheState
{
    /// <summary>Never learned, or forgotten after <see cref="AllowlistCacheOptions.ExpiredRetention"/>.</summary>
    NeverLearned,

    /// <summary>Learned and allowed: before its expiry, or inside the grace period after it.</summary>
    Live,

    /// <summary>Learned, but its expiry and grace period have passed.</summary>
    Expired,

    /// <summary>Learned, then evicted by the size bound (<see cref="AllowlistCacheOptions.MaxEntries"/>) while it was
    /// still allowed, and it would still be (its TTL and grace have not run out); after that it reads as
    /// <see cref="Expired"/>.</summary>
    Evicted,
}
