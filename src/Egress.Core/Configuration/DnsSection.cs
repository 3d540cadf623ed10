namespace Egress.Configuration;

/// <summary>The <c>[dns]</c> section: how long addresses learnt from DNS answers stay allowed.</summary>
public sealed class DnsSection
{
    internal DnsSection(TimeSpan ttlFloor, TimeSpan grace, int cacheMaxEntries)
    {
        TtlFloor = ttlFloor;
        Grace = grace;
        CacheMaxEntries = cacheMaxEntries;
    }

    /// <summary>Gets the shortest time an answered address stays allowed, whatever its TTL (<c>dns.ttl_floor_seconds</c>, default 30 s).</summary>
    public TimeSpan TtlFloor { get; }

    /// <summary>Gets how long an address stays allowed after its TTL ran out (<c>dns.grace_seconds</c>, default 60 s).</summary>
    public TimeSpan Grace { get; }

    /// <summary>Gets the most learnt addresses kept at once (<c>dns.cache_max_entries</c>, default 65536).</summary>
    public int CacheMaxEntries { get; }
}
