using Egress.Configuration;

namespace Egress.Policy;

/// <summary>Settings of an <see cref="AllowlistCache"/>.</summary>
public sealed class AllowlistCacheOptions
{
    /// <summary>The shortest lifetime given to a learned address, however small its DNS TTL. Default 30 s.</summary>
    public TimeSpan TtlFloor { get; init; } = ConfigurationKeys.DnsTtlFloor.DefaultDuration;

    /// <summary>How long an address stays allowed after its lifetime expires (clients cache answers). Default 60 s.</summary>
    public TimeSpan Grace { get; init; } = ConfigurationKeys.DnsGrace.DefaultDuration;

    /// <summary>
    /// How long an expired address is remembered, so a denial can say what it was learned from and when it expired;
    /// after that it is treated as never learned and <see cref="AllowlistCache.Prune"/> removes it. Default 1 h.
    /// </summary>
    public TimeSpan ExpiredRetention { get; init; } = TimeSpan.FromHours(1);

    /// <summary>The most addresses kept; learning a new address beyond it evicts. Default 65536.</summary>
    public int MaxEntries { get; init; } = ConfigurationKeys.DnsCacheMaxEntries.DefaultInt32;

    /// <summary>The clock. Default <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;
}
