using System.Net;
using BenchmarkDotNet.Attributes;
using Egress.Policy;

namespace Egress.Benchmarks;

/// <summary>The proxy's per-connection decision: <see cref="EgressPolicy.CheckAddress"/> and the cache behind it.</summary>
[MemoryDiagnoser]
public class PolicyBenchmarks
{
    private static readonly IPAddress StaticAddress = IPAddress.Parse("198.18.0.10");
    private static readonly IPAddress LearnedAddress = IPAddress.Parse("93.184.215.14");
    private static readonly IPAddress UnknownAddress = IPAddress.Parse("93.184.215.99");

    private AllowlistCache _cache = null!;
    private EgressPolicy _policy = null!;

    [GlobalSetup]
    public void Setup()
    {
        _cache = new AllowlistCache();
        _policy = EgressPolicy.Create(
            enabled: true,
            ["10.1.2.3", "198.18.0.0/15", "2001:db8::/32", "api.egress.test", "*.bench.egress.test", "*.example.org"],
            _cache);
        for (int i = 0; i < 1000; i++)
        {
            _policy.Learn($"n{i}.bench.egress.test", new IPAddress([100, 64, (byte)(i >> 8), (byte)i]), TimeSpan.FromHours(1));
        }

        LearnResult learned = _policy.Learn("api.egress.test", LearnedAddress, TimeSpan.FromHours(1));
        if (!_policy.CheckAddress(LearnedAddress).IsAllowed || _policy.CheckAddress(UnknownAddress).IsAllowed)
        {
            throw new InvalidOperationException($"unexpected policy state (learn: {learned})");
        }
    }

    [Benchmark(Description = "EgressPolicy.CheckAddress static hit")]
    public PolicyDecision CheckAddressStaticHit() => _policy.CheckAddress(StaticAddress);

    [Benchmark(Description = "EgressPolicy.CheckAddress learned hit")]
    public PolicyDecision CheckAddressLearnedHit() => _policy.CheckAddress(LearnedAddress);

    [Benchmark(Description = "EgressPolicy.CheckAddress miss")]
    public PolicyDecision CheckAddressMiss() => _policy.CheckAddress(UnknownAddress);

    [Benchmark(Description = "AllowlistCache.Lookup hit")]
    public int CacheLookupHit() => (int)_cache.Lookup(LearnedAddress).State; // CacheLookup is internal

    [Benchmark(Description = "AllowlistCache.Lookup miss")]
    public int CacheLookupMiss() => (int)_cache.Lookup(UnknownAddress).State;
}
