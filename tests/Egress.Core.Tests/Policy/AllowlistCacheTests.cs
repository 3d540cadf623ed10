using System.Net;
using Egress.Policy;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Policy;

public sealed class AllowlistCacheTests
{
    private static readonly IPAddress Address = IPAddress.Parse("198.18.0.10");
    private static readonly TimeSpan Tick = TimeSpan.FromTicks(1);

    private FakeTimeProvider _time = null!;

    [SetUp]
    public void SetUp() => _time = new FakeTimeProvider();

    [Test]
    public void UnknownAddressWasNeverLearned()
    {
        CacheLookup lookup = NewCache().Lookup(Address);

        Assert.Multiple(() =>
        {
            Assert.That(lookup.State, Is.EqualTo(CacheState.NeverLearned));
            Assert.That(lookup.Name, Is.Null);
            Assert.That(lookup.InGrace, Is.False);
            Assert.That(lookup.Time, Is.EqualTo(TimeSpan.Zero));
        });
    }

    [Test]
    public void LearnedAddressIsLiveUntilItsTtl()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(120));
        _time.Advance(TimeSpan.FromSeconds(78));

        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: false, TimeSpan.FromSeconds(42));
    }

    [TestCase(0)]
    [TestCase(5)]
    [TestCase(29)]
    [TestCase(-10)]
    public void TtlBelowFloorIsRaisedToFloor(int ttlSeconds)
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(ttlSeconds));

        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: false, TimeSpan.FromSeconds(30));
    }

    [Test]
    public void TtlAboveFloorIsKept()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(31));

        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: false, TimeSpan.FromSeconds(31));
    }

    [Test]
    public void HugeTtlDoesNotOverflow()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.MaxValue);

        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: false, AllowlistCache.MaxTtl);
    }

    /// <summary>From a security review: a TTL of 2^31−1 s kept an address live for 68 years; it is cut to one day.</summary>
    [TestCase(86_401)]
    [TestCase(int.MaxValue)]
    public void TtlAboveOneDayIsCutToOneDay(int ttlSeconds)
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(ttlSeconds));

        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: false, TimeSpan.FromDays(1));
        _time.Advance(TimeSpan.FromDays(1) + TimeSpan.FromSeconds(1));
        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: true, TimeSpan.FromSeconds(59));
    }

    [Test]
    public void AFloorAboveOneDayStillWins()
    {
        var cache = new AllowlistCache(new AllowlistCacheOptions { TimeProvider = _time, TtlFloor = TimeSpan.FromDays(2) });
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(60));

        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: false, TimeSpan.FromDays(2));
    }

    [Test]
    public void ExpiryGraceAndRetentionBoundariesAreExact()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(100));

        _time.Advance(TimeSpan.FromSeconds(100) - Tick);
        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: false, Tick);

        _time.Advance(Tick);
        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: true, TimeSpan.FromSeconds(60));

        _time.Advance(TimeSpan.FromSeconds(60) - Tick);
        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: true, Tick);

        _time.Advance(Tick);
        AssertLookup(cache.Lookup(Address), CacheState.Expired, "api.example.com", inGrace: false, TimeSpan.Zero);

        _time.Advance(TimeSpan.FromSeconds(12));
        AssertLookup(cache.Lookup(Address), CacheState.Expired, "api.example.com", inGrace: false, TimeSpan.FromSeconds(12));

        _time.Advance(TimeSpan.FromHours(1) - TimeSpan.FromSeconds(12) - Tick);
        AssertLookup(cache.Lookup(Address), CacheState.Expired, "api.example.com", inGrace: false, TimeSpan.FromHours(1) - Tick);
        Assert.That(cache.Prune(), Is.Zero);
        Assert.That(cache.Count, Is.EqualTo(1));

        _time.Advance(Tick);
        AssertLookup(cache.Lookup(Address), CacheState.NeverLearned, null, inGrace: false, TimeSpan.Zero);
        Assert.That(cache.Count, Is.EqualTo(1), "forgotten but not yet pruned");
        Assert.That(cache.Prune(), Is.EqualTo(1));
        Assert.That(cache.Count, Is.Zero);
    }

    [Test]
    public void LearningForgetsWhatIsPastRetentionByItself()
    {
        AllowlistCache cache = NewCache();
        IPAddress other = IPAddress.Parse("198.18.0.11");
        cache.Learn("old.example.com", Address, TimeSpan.FromSeconds(30));

        // Past TTL + grace + retention (30 s + 60 s + 1 h): the next Learn prunes without anyone calling Prune.
        _time.Advance(TimeSpan.FromSeconds(90) + TimeSpan.FromHours(1) + Tick);
        cache.Learn("new.example.com", other, TimeSpan.FromSeconds(30));

        Assert.That(cache.Count, Is.EqualTo(1));
        Assert.That(cache.Prune(), Is.Zero, "nothing left to prune");
    }

    [Test]
    public void OptionsSetFloorGraceAndRetention()
    {
        var cache = new AllowlistCache(new AllowlistCacheOptions
        {
            TimeProvider = _time,
            TtlFloor = TimeSpan.FromSeconds(5),
            Grace = TimeSpan.FromSeconds(7),
            ExpiredRetention = TimeSpan.FromSeconds(11),
        });
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(1));
        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: false, TimeSpan.FromSeconds(5));

        _time.Advance(TimeSpan.FromSeconds(5));
        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: true, TimeSpan.FromSeconds(7));

        _time.Advance(TimeSpan.FromSeconds(7));
        AssertLookup(cache.Lookup(Address), CacheState.Expired, "api.example.com", inGrace: false, TimeSpan.Zero);

        _time.Advance(TimeSpan.FromSeconds(11));
        AssertLookup(cache.Lookup(Address), CacheState.NeverLearned, null, inGrace: false, TimeSpan.Zero);
    }

    [Test]
    public void RelearningExtends()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(60));
        _time.Advance(TimeSpan.FromSeconds(50));
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(60));

        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: false, TimeSpan.FromSeconds(60));
    }

    [Test]
    public void RelearningAfterExpiryMakesLiveAgain()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(60));
        _time.Advance(TimeSpan.FromSeconds(500));
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(60));

        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: false, TimeSpan.FromSeconds(60));
    }

    [Test]
    public void RelearningWithShorterTtlDoesNotShorten()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(300));
        _time.Advance(TimeSpan.FromSeconds(10));
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(30));

        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: false, TimeSpan.FromSeconds(290));
    }

    [Test]
    public void NamesAreStoredLowerCaseWithoutTrailingDotAndMergedCaseInsensitively()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("API.Example.COM.", Address, TimeSpan.FromSeconds(60));
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(90));

        Assert.Multiple(() =>
        {
            Assert.That(cache.NamesOf(Address).Select(name => name.Name), Is.EqualTo(new[] { "api.example.com" }));
            Assert.That(cache.Lookup(Address).Name, Is.EqualTo("api.example.com"));
            Assert.That(cache.Lookup(Address).Time, Is.EqualTo(TimeSpan.FromSeconds(90)));
        });
    }

    [Test]
    public void BestNameIsTheLiveOneExpiringLast()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("a.example.com", Address, TimeSpan.FromSeconds(100));
        cache.Learn("b.example.com", Address, TimeSpan.FromSeconds(200));
        cache.Learn("c.example.com", Address, TimeSpan.FromSeconds(150));

        AssertLookup(cache.Lookup(Address), CacheState.Live, "b.example.com", inGrace: false, TimeSpan.FromSeconds(200));

        _time.Advance(TimeSpan.FromSeconds(100));
        cache.Learn("a.example.com", Address, TimeSpan.FromSeconds(120));
        AssertLookup(cache.Lookup(Address), CacheState.Live, "a.example.com", inGrace: false, TimeSpan.FromSeconds(120));
    }

    [Test]
    public void ExpiredAddressNamesTheMostRecentlyExpiredName()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("a.example.com", Address, TimeSpan.FromSeconds(100));
        cache.Learn("b.example.com", Address, TimeSpan.FromSeconds(40));
        _time.Advance(TimeSpan.FromSeconds(172));

        AssertLookup(cache.Lookup(Address), CacheState.Expired, "a.example.com", inGrace: false, TimeSpan.FromSeconds(12));
    }

    [Test]
    public void KeepsAtMostEightNamesDroppingTheOneExpiringFirst()
    {
        AllowlistCache cache = NewCache();
        for (int i = 1; i <= 9; i++)
        {
            cache.Learn($"n{i}.example.com", Address, TimeSpan.FromSeconds(100 + i));
        }

        cache.Learn("short.example.com", Address, TimeSpan.FromSeconds(30));

        Assert.That(
            cache.NamesOf(Address).Select(name => name.Name).Order(),
            Is.EqualTo(Enumerable.Range(2, 8).Select(i => $"n{i}.example.com")));
    }

    [Test]
    public void RelearningDropsForgottenNames()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("old.example.com", Address, TimeSpan.FromSeconds(30));
        _time.Advance(TimeSpan.FromSeconds(30 + 60) + TimeSpan.FromHours(1));
        cache.Learn("new.example.com", Address, TimeSpan.FromSeconds(30));

        Assert.That(cache.NamesOf(Address).Select(name => name.Name), Is.EqualTo(new[] { "new.example.com" }));
    }

    [Test]
    public void PruneDropsForgottenNamesButKeepsTheAddress()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("old.example.com", Address, TimeSpan.FromSeconds(30));
        cache.Learn("new.example.com", Address, TimeSpan.FromHours(5));
        _time.Advance(TimeSpan.FromHours(2));

        Assert.Multiple(() =>
        {
            Assert.That(cache.Prune(), Is.Zero);
            Assert.That(cache.Count, Is.EqualTo(1));
            Assert.That(cache.NamesOf(Address).Select(name => name.Name), Is.EqualTo(new[] { "new.example.com" }));
        });
    }

    [Test]
    public void IPv4MappedAddressIsTheSameEntry()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", IPAddress.Parse("::ffff:198.18.0.10"), TimeSpan.FromSeconds(60));
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(90));

        Assert.Multiple(() =>
        {
            Assert.That(cache.Count, Is.EqualTo(1));
            Assert.That(cache.Lookup(Address).Time, Is.EqualTo(TimeSpan.FromSeconds(90)));
            Assert.That(cache.Lookup(IPAddress.Parse("::ffff:198.18.0.10")).State, Is.EqualTo(CacheState.Live));
            Assert.That(cache.Lookup(IPAddress.Parse("::198.18.0.10")).State, Is.EqualTo(CacheState.NeverLearned));
        });
    }

    [Test]
    public void IPv6AddressesAreDistinct()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", IPAddress.Parse("2001:db8::1"), TimeSpan.FromSeconds(60));

        Assert.Multiple(() =>
        {
            Assert.That(cache.Lookup(IPAddress.Parse("2001:DB8:0::1")).State, Is.EqualTo(CacheState.Live));
            Assert.That(cache.Lookup(IPAddress.Parse("2001:db8::2")).State, Is.EqualTo(CacheState.NeverLearned));
        });
    }

    [Test]
    public void FullCacheEvictsTheAddressExpiringFirst()
    {
        AllowlistCache cache = NewCache(maxEntries: 4);
        cache.Learn("a.example.com", Ip(1), TimeSpan.FromSeconds(400));
        cache.Learn("b.example.com", Ip(2), TimeSpan.FromSeconds(100));
        cache.Learn("c.example.com", Ip(3), TimeSpan.FromSeconds(300));
        cache.Learn("d.example.com", Ip(4), TimeSpan.FromSeconds(200));
        Assert.That(cache.Evictions, Is.Zero);

        cache.Learn("e.example.com", Ip(5), TimeSpan.FromSeconds(50));

        Assert.Multiple(() =>
        {
            Assert.That(cache.Count, Is.EqualTo(4));
            Assert.That(cache.Evictions, Is.EqualTo(1));
            Assert.That(cache.Lookup(Ip(2)).State, Is.EqualTo(CacheState.Evicted));
            Assert.That(new[] { 1, 3, 4, 5 }.Select(i => cache.Lookup(Ip(i)).State), Is.All.EqualTo(CacheState.Live));
        });
    }

    [Test]
    public void FullCacheEvictsExpiredBeforeLive()
    {
        AllowlistCache cache = NewCache(maxEntries: 3);
        cache.Learn("live.example.com", Ip(1), TimeSpan.FromSeconds(1000));
        _time.Advance(TimeSpan.FromSeconds(10));
        cache.Learn("old.example.com", Ip(2), TimeSpan.FromSeconds(30));
        _time.Advance(TimeSpan.FromSeconds(10));
        cache.Learn("older.example.com", Ip(3), TimeSpan.FromSeconds(30));
        _time.Advance(TimeSpan.FromSeconds(200));
        Assert.That(cache.Lookup(Ip(2)).State, Is.EqualTo(CacheState.Expired));

        cache.Learn("new.example.com", Ip(4), TimeSpan.FromSeconds(30));

        Assert.Multiple(() =>
        {
            Assert.That(cache.Evictions, Is.EqualTo(1));
            Assert.That(cache.Lookup(Ip(2)).State, Is.EqualTo(CacheState.NeverLearned));
            Assert.That(cache.Lookup(Ip(3)).State, Is.EqualTo(CacheState.Expired));
            Assert.That(cache.Lookup(Ip(1)).State, Is.EqualTo(CacheState.Live));
            Assert.That(cache.Lookup(Ip(4)).State, Is.EqualTo(CacheState.Live));
        });
    }

    [Test]
    public void FullCacheFirstEvictsEveryForgottenAddress()
    {
        // No floor, grace or retention: an address is forgotten as soon as its TTL ends, sooner than Learn's own
        // once-a-minute prune would remove it, so the size bound meets forgotten addresses and must evict them first.
        var cache = new AllowlistCache(new AllowlistCacheOptions
        {
            TimeProvider = _time,
            MaxEntries = 4,
            TtlFloor = TimeSpan.Zero,
            Grace = TimeSpan.Zero,
            ExpiredRetention = TimeSpan.Zero,
        });
        for (int i = 1; i <= 3; i++)
        {
            cache.Learn("old.example.com", Ip(i), TimeSpan.FromSeconds(1));
        }

        _time.Advance(TimeSpan.FromSeconds(10));
        cache.Learn("live.example.com", Ip(4), TimeSpan.FromSeconds(30));
        cache.Learn("new.example.com", Ip(5), TimeSpan.FromSeconds(30));

        Assert.Multiple(() =>
        {
            Assert.That(cache.Evictions, Is.EqualTo(3));
            Assert.That(cache.Count, Is.EqualTo(2));
            Assert.That(cache.Lookup(Ip(4)).State, Is.EqualTo(CacheState.Live));
            Assert.That(cache.Lookup(Ip(5)).State, Is.EqualTo(CacheState.Live));
        });
    }

    [Test]
    public void EvictionRemovesABatchOfOneSixtyFourth()
    {
        AllowlistCache cache = NewCache(maxEntries: 128);
        for (int i = 0; i < 128; i++)
        {
            cache.Learn("a.example.com", Ip(i), TimeSpan.FromSeconds(100 + i));
        }

        cache.Learn("a.example.com", Ip(500), TimeSpan.FromSeconds(30));

        Assert.Multiple(() =>
        {
            Assert.That(cache.Evictions, Is.EqualTo(2));
            Assert.That(cache.Count, Is.EqualTo(127));
            Assert.That(cache.Lookup(Ip(0)).State, Is.EqualTo(CacheState.Evicted));
            Assert.That(cache.Lookup(Ip(1)).State, Is.EqualTo(CacheState.Evicted));
            Assert.That(cache.Lookup(Ip(2)).State, Is.EqualTo(CacheState.Live));
        });
    }

    [Test]
    public void RelearningAKnownAddressInAFullCacheDoesNotEvict()
    {
        AllowlistCache cache = NewCache(maxEntries: 2);
        cache.Learn("a.example.com", Ip(1), TimeSpan.FromSeconds(60));
        cache.Learn("b.example.com", Ip(2), TimeSpan.FromSeconds(60));
        cache.Learn("c.example.com", Ip(1), TimeSpan.FromSeconds(60));

        Assert.Multiple(() =>
        {
            Assert.That(cache.Evictions, Is.Zero);
            Assert.That(cache.Count, Is.EqualTo(2));
        });
    }

    [Test]
    public void RejectsInvalidOptionsAndArguments()
    {
        Assert.Multiple(() =>
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => _ = new AllowlistCache(new AllowlistCacheOptions { MaxEntries = 0 }));
            Assert.Throws<ArgumentOutOfRangeException>(() => _ = new AllowlistCache(new AllowlistCacheOptions { TtlFloor = TimeSpan.FromSeconds(-1) }));
            Assert.Throws<ArgumentOutOfRangeException>(() => _ = new AllowlistCache(new AllowlistCacheOptions { Grace = TimeSpan.FromSeconds(-1) }));
            Assert.Throws<ArgumentOutOfRangeException>(() => _ = new AllowlistCache(new AllowlistCacheOptions { ExpiredRetention = TimeSpan.FromSeconds(-1) }));
            Assert.Throws<ArgumentNullException>(() => _ = new AllowlistCache(new AllowlistCacheOptions { TimeProvider = null! }));
            Assert.Throws<ArgumentException>(() => NewCache().Learn("", Address, TimeSpan.Zero));
            Assert.Throws<ArgumentNullException>(() => NewCache().Learn("a.example.com", null!, TimeSpan.Zero));
        });
    }

    [Test]
    public void DefaultOptions()
    {
        var options = new AllowlistCacheOptions();

        Assert.Multiple(() =>
        {
            Assert.That(options.TtlFloor, Is.EqualTo(TimeSpan.FromSeconds(30)));
            Assert.That(options.Grace, Is.EqualTo(TimeSpan.FromSeconds(60)));
            Assert.That(options.ExpiredRetention, Is.EqualTo(TimeSpan.FromHours(1)));
            Assert.That(options.MaxEntries, Is.EqualTo(65536));
            Assert.That(options.TimeProvider, Is.SameAs(TimeProvider.System));
        });
    }

    [Test]
    public void LookupDoesNotAllocate()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(60));
        IPAddress miss = IPAddress.Parse("2001:db8::1");
        IPAddress mapped = IPAddress.Parse("::ffff:198.18.0.10");
        int rounds = 0;
        int live = 0;

        long allocated = Allocations.LeastPerRound(() =>
        {
            rounds++;
            for (int i = 0; i < 100; i++)
            {
                live += cache.Lookup(Address).State == CacheState.Live ? 1 : 0;
                live += cache.Lookup(miss).State == CacheState.Live ? 1 : 0;
                live += cache.Lookup(mapped).State == CacheState.Live ? 1 : 0;
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(allocated, Is.Zero);
            Assert.That(live, Is.EqualTo(rounds * 200));
        });
    }

    [Test]
    public void ConcurrentLearnAndLookupStayConsistent()
    {
        const int Addresses = 64;
        AllowlistCache cache = NewCache();
        int inconsistent = 0;

        Parallel.For(0, 8, worker =>
        {
            for (int round = 0; round < 2000; round++)
            {
                int i = (round * 7 + worker) % Addresses;
                if (worker % 2 == 0)
                {
                    cache.Learn($"host{i}.example.com", Ip(i), TimeSpan.FromSeconds(60 + round % 5));
                    cache.Learn($"alias{i}.example.com", Ip(i), TimeSpan.FromSeconds(30));
                }
                else
                {
                    CacheLookup lookup = cache.Lookup(Ip(i));
                    bool consistent = lookup.State == CacheState.NeverLearned
                        ? lookup.Name is null
                        : lookup.State is CacheState.Live or CacheState.Evicted && !lookup.InGrace
                          && (lookup.Name == $"host{i}.example.com" || lookup.Name == $"alias{i}.example.com");
                    if (!consistent)
                    {
                        Interlocked.Increment(ref inconsistent);
                    }
                }
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(inconsistent, Is.Zero);
            Assert.That(cache.Count, Is.EqualTo(Addresses));
            Assert.That(cache.Evictions, Is.Zero);
            Assert.That(Enumerable.Range(0, Addresses).Select(i => cache.Lookup(Ip(i)).Name), Is.EqualTo(Enumerable.Range(0, Addresses).Select(i => $"host{i}.example.com")));
            Assert.That(Enumerable.Range(0, Addresses).Select(i => cache.NamesOf(Ip(i)).Count), Is.All.EqualTo(2));
        });
    }

    // A review: the walk that makes room (once per MaxEntries/64 new addresses of a full cache: 4-9 ms at 65,536 entries,
    // measured) and the minute's prune (10-12 ms) held the write lock, which Hold and Release take on a connection's
    // thread (the accepting thread, an epoll thread): a connection to a learned address waited out the whole walk.
    [TestCase("room for a new address")]
    [TestCase("prune")]
    public void AConnectionHoldsAnAddressWhileTheCacheIsWalked(string walk)
    {
        AllowlistCache cache = NewCache(maxEntries: 64);
        for (int i = 0; i < 64; i++)
        {
            cache.Learn("a.example.com", Ip(i), TimeSpan.FromSeconds(60));
        }

        bool? heldDuringWalk = null;
        cache.WalkStarting = () =>
        {
            if (heldDuringWalk is null)
            {
                var holding = Task.Run(() =>
                {
                    _ = cache.Hold(Ip(1), "a.example.com", null, out AddressHold? hold);
                    hold?.Dispose();
                });
                heldDuringWalk = holding.Wait(TimeSpan.FromSeconds(5));
            }
        };

        if (walk == "prune")
        {
            _ = cache.Prune();
        }
        else
        {
            cache.Learn("a.example.com", Ip(64), TimeSpan.FromSeconds(60));
        }

        Assert.Multiple(() =>
        {
            Assert.That(heldDuringWalk, Is.True, "a hold was taken while the walk ran");
            Assert.That(cache.Count, Is.LessThanOrEqualTo(64));
        });
    }

    [Test]
    public void ConcurrentLearningOfNewAddressesStaysWithinTheBound()
    {
        const int Workers = 8;
        const int PerWorker = 1000;
        AllowlistCache cache = NewCache(maxEntries: 100);
        int overBound = 0;

        Parallel.For(0, Workers, worker =>
        {
            for (int i = 0; i < PerWorker; i++)
            {
                cache.Learn("a.example.com", Ip(worker * PerWorker + i), TimeSpan.FromSeconds(60));
                if (cache.Count > 100)
                {
                    Interlocked.Increment(ref overBound);
                }
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(overBound, Is.Zero);
            Assert.That(cache.Count + cache.Evictions, Is.EqualTo(Workers * PerWorker), "every address added is held or was evicted");
            Assert.That(cache.Count, Is.LessThanOrEqualTo(100));
        });
    }

    [Test]
    public void UsesTheClockOfTheOptionsOnly()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(60));
        _time.Advance(TimeSpan.FromDays(1));

        Assert.That(cache.Lookup(Address).State, Is.EqualTo(CacheState.NeverLearned));
    }

    private static IPAddress Ip(int i) => new(new byte[] { (byte)(10 + (i >> 16)), (byte)(i >> 8), (byte)i, 7 });

    [Test]
    public void HeldAddressStaysLivePastTtlAndGraceWhileInUse()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(1));
        CacheLookup taken = cache.Hold(Address, "api.example.com", null, out AddressHold? hold);
        _time.Advance(TimeSpan.FromSeconds(95)); // floor 30 s + grace 60 s, and 5 s more

        CacheLookup lookup = cache.Lookup(Address);

        Assert.Multiple(() =>
        {
            Assert.That(taken.State, Is.EqualTo(CacheState.Live));
            Assert.That(hold, Is.Not.Null);
            Assert.That(lookup.State, Is.EqualTo(CacheState.Live));
            Assert.That(lookup.InUse, Is.True);
            Assert.That(lookup.Connections, Is.EqualTo(1));
            Assert.That(lookup.InGrace, Is.False);
        });
        hold!.Dispose();
    }

    [Test]
    public void GraceStartsWhenTheLastHoldIsReleased()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(1));
        cache.Hold(Address, "api.example.com", null, out AddressHold? first);
        cache.Hold(Address, "api.example.com", null, out AddressHold? second);
        _time.Advance(TimeSpan.FromSeconds(200));

        first!.Dispose();
        Assert.That(cache.ConnectionsThrough(Address), Is.EqualTo(1));
        Assert.That(cache.Lookup(Address).InUse, Is.True, "one connection still open");
        second!.Dispose();
        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: true, TimeSpan.FromSeconds(60));
        _time.Advance(TimeSpan.FromSeconds(60));

        AssertLookup(cache.Lookup(Address), CacheState.Expired, "api.example.com", inGrace: false, TimeSpan.Zero);
    }

    [Test]
    public void ReleasingAHoldTwiceReleasesItOnce()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(1));
        cache.Hold(Address, "api.example.com", null, out AddressHold? first);
        cache.Hold(Address, "api.example.com", null, out AddressHold? second);

        first!.Dispose();
        first.Dispose();

        Assert.That(cache.ConnectionsThrough(Address), Is.EqualTo(1), "the second connection still holds it");
        second!.Dispose();
        Assert.That(cache.ConnectionsThrough(Address), Is.Zero);
    }

    [Test]
    public void ReleaseBeforeTheTtlDoesNotShortenIt()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(300));
        cache.Hold(Address, "api.example.com", null, out AddressHold? hold);
        _time.Advance(TimeSpan.FromSeconds(100));

        hold!.Dispose();

        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: false, TimeSpan.FromSeconds(200));
    }

    [Test]
    public void ExpiredAddressCannotBeHeld()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(1));
        _time.Advance(TimeSpan.FromSeconds(95));

        CacheLookup lookup = cache.Hold(Address, "api.example.com", null, out AddressHold? hold);

        Assert.That((lookup.State, hold), Is.EqualTo((CacheState.Expired, (AddressHold?)null)));
        Assert.That(cache.ConnectionsThrough(Address), Is.Zero);
        Assert.That(cache.Hold(IPAddress.Parse("198.18.0.99"), "api.example.com", null, out hold).State, Is.EqualTo(CacheState.NeverLearned));
        Assert.That(hold, Is.Null);
    }

    [Test]
    public void PruneKeepsAnAddressInUseLongPastRetention()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(1));
        cache.Hold(Address, "api.example.com", null, out AddressHold? hold);
        _time.Advance(TimeSpan.FromDays(1));

        Assert.That(cache.Prune(), Is.Zero);
        Assert.That(cache.Lookup(Address).InUse, Is.True);
        hold!.Dispose();
        AssertLookup(cache.Lookup(Address), CacheState.Live, "api.example.com", inGrace: true, TimeSpan.FromSeconds(60));
    }

    [Test]
    public void EvictionSkipsAddressesInUseAndBoundsTheOthers()
    {
        AllowlistCache cache = NewCache(maxEntries: 2);
        cache.Learn("held.example.com", Address, TimeSpan.FromSeconds(1)); // expires first: the eviction candidate
        cache.Hold(Address, "held.example.com", null, out AddressHold? hold);
        for (int i = 1; i <= 5; i++)
        {
            cache.Learn("n.example.com", IPAddress.Parse($"198.18.9.{i}"), TimeSpan.FromSeconds(100 + i));
        }

        Assert.Multiple(() =>
        {
            Assert.That(cache.Lookup(Address).State, Is.EqualTo(CacheState.Live), "held: never evicted");
            Assert.That(cache.Count, Is.EqualTo(3), "two not in use (MaxEntries) and the one in use");
            Assert.That(cache.Lookup(IPAddress.Parse("198.18.9.5")).State, Is.EqualTo(CacheState.Live));
            Assert.That(cache.Lookup(IPAddress.Parse("198.18.9.4")).State, Is.EqualTo(CacheState.Live));
            Assert.That(cache.Lookup(IPAddress.Parse("198.18.9.3")).State, Is.EqualTo(CacheState.Evicted));
        });
        hold!.Dispose();
    }

    [Test]
    public void ConcurrentHoldsAndReleasesBalance()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("api.example.com", Address, TimeSpan.FromSeconds(1));

        Parallel.For(0, 8, _ =>
        {
            for (int i = 0; i < 2000; i++)
            {
                cache.Hold(Address, "api.example.com", null, out AddressHold? hold);
                hold!.Dispose();
            }
        });

        Assert.That(cache.ConnectionsThrough(Address), Is.Zero);
    }

    private static void AssertLookup(CacheLookup lookup, CacheState state, string? name, bool inGrace, TimeSpan time) =>
        Assert.Multiple(() =>
        {
            Assert.That(lookup.State, Is.EqualTo(state));
            Assert.That(lookup.Name, Is.EqualTo(name));
            Assert.That(lookup.InGrace, Is.EqualTo(inGrace));
            Assert.That(lookup.Time, Is.EqualTo(time));
        });

    [Test]
    public void OtherAddressesOfANameAreTheLiveOnesOfTheSameFamilyFirst()
    {
        AllowlistCache cache = NewCache();
        IPAddress refused = IPAddress.Parse("198.18.0.21"), sibling = IPAddress.Parse("198.18.0.22"), v6 = IPAddress.Parse("2001:db8::22");
        IPAddress expired = IPAddress.Parse("198.18.0.23"), otherName = IPAddress.Parse("198.18.0.24");
        cache.Learn("api.example.com", expired, TimeSpan.FromSeconds(1));
        _time.Advance(TimeSpan.FromSeconds(95)); // past floor (30 s) and grace (60 s)
        cache.Learn("api.example.com", v6, TimeSpan.FromSeconds(300));
        cache.Learn("API.example.com.", refused, TimeSpan.FromSeconds(300));
        cache.Learn("api.example.com", sibling, TimeSpan.FromSeconds(300));
        cache.Learn("cdn.example.net", otherName, TimeSpan.FromSeconds(300));

        Assert.Multiple(() =>
        {
            Assert.That(cache.OtherAddressesOf("api.example.com.", refused, 8), Is.EqualTo(new[] { sibling, v6 }), "same family first, never the refused or an expired one");
            Assert.That(cache.OtherAddressesOf("api.example.com", refused, 1), Is.EqualTo(new[] { sibling }));
            Assert.That(cache.OtherAddressesOf("api.example.com", refused, 0), Is.Empty);
            Assert.That(cache.OtherAddressesOf("cdn.example.net", otherName, 8), Is.Empty);
            Assert.That(cache.OtherAddressesOf("nobody.example.com", refused, 8), Is.Empty);
        });
    }

    [Test]
    public void AnAddressInUseIsAFailoverCandidatePastItsGrace()
    {
        AllowlistCache cache = NewCache();
        IPAddress busy = IPAddress.Parse("198.18.0.31"), refused = IPAddress.Parse("198.18.0.32");
        cache.Learn("api.example.com", busy, TimeSpan.FromSeconds(1));
        cache.Learn("api.example.com", refused, TimeSpan.FromSeconds(1));
        cache.Hold(busy, "api.example.com", null, out AddressHold? hold);
        _time.Advance(TimeSpan.FromSeconds(95));

        Assert.That(cache.OtherAddressesOf("api.example.com", refused, 8), Is.EqualTo(new[] { busy }));
        hold!.Dispose();
        _time.Advance(TimeSpan.FromSeconds(61));
        Assert.That(cache.OtherAddressesOf("api.example.com", refused, 8), Is.Empty, "the grace after the last connection has passed");
    }

    [Test]
    public void AnAddressHeldThroughAnotherNameIsNoFailoverCandidate()
    {
        AllowlistCache cache = NewCache();
        IPAddress busy = IPAddress.Parse("198.18.0.41"), refused = IPAddress.Parse("198.18.0.42");
        cache.Learn("api.example.com", busy, TimeSpan.FromSeconds(1));
        cache.Learn("cdn.example.net", busy, TimeSpan.FromSeconds(1));
        cache.Learn("api.example.com", refused, TimeSpan.FromSeconds(1));
        cache.Hold(busy, "cdn.example.net", null, out AddressHold? hold);
        _time.Advance(TimeSpan.FromSeconds(95));

        Assert.That(cache.OtherAddressesOf("api.example.com", refused, 8), Is.Empty, "busy is held through cdn.example.net only");
        hold!.Dispose();
    }

    [Test]
    public void ANameThatNoLongerCountsIsNotHeldThoughTheAddressIsLive()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("old.example.com", Address, TimeSpan.FromSeconds(1));
        _time.Advance(TimeSpan.FromSeconds(95)); // old.example.com: past its floor (30 s) and grace (60 s)
        cache.Learn("new.example.com", Address, TimeSpan.FromSeconds(300));

        CacheLookup refused = cache.Hold(Address, "old.example.com", null, out AddressHold? none);
        CacheLookup taken = cache.Hold(Address, "new.example.com", null, out AddressHold? hold);

        Assert.Multiple(() =>
        {
            Assert.That((refused.State, none), Is.EqualTo((CacheState.Live, (AddressHold?)null)));
            Assert.That((taken.State, hold?.Name), Is.EqualTo((CacheState.Live, "new.example.com")));
            Assert.That(cache.ConnectionsThrough(Address), Is.EqualTo(1));
        });
        hold!.Dispose();
    }

    [Test]
    public void AFullAddressNeverReplacesAHeldName()
    {
        AllowlistCache cache = NewCache();
        cache.Learn("held.example.com", Address, TimeSpan.FromSeconds(1)); // expires first
        cache.Hold(Address, "held.example.com", null, out AddressHold? hold);
        for (int i = 1; i < AllowlistCache.MaxNamesPerAddress; i++)
        {
            cache.Learn($"n{i}.example.com", Address, TimeSpan.FromSeconds(100 + i));
        }

        cache.Learn("late.example.com", Address, TimeSpan.FromSeconds(500));
        var names = cache.NamesOf(Address).Select(name => name.Name).ToList();

        Assert.Multiple(() =>
        {
            Assert.That(names, Has.Count.EqualTo(AllowlistCache.MaxNamesPerAddress));
            Assert.That(names, Does.Contain("held.example.com"));
            Assert.That(names, Does.Contain("late.example.com"));
            Assert.That(names, Does.Not.Contain("n1.example.com"), "the earliest expiry not held is the one replaced");
        });
        hold!.Dispose();
    }

    /// <summary>From the DNS trial: an address the size bound evicted was denied as "never learned", which sent the
    /// operator the wrong way. It is now said to be evicted, with the name it was learned from and since when.</summary>
    [Test]
    public void AnAddressTheSizeBoundEvictedIsSaidToBeEvictedWithItsName()
    {
        AllowlistCache cache = NewCache(maxEntries: 1);
        var other = IPAddress.Parse("198.18.0.11");
        cache.Learn("first.example.com", Address, TimeSpan.FromSeconds(60));
        cache.Learn("second.example.com", other, TimeSpan.FromSeconds(600));
        _time.Advance(TimeSpan.FromSeconds(5));

        AssertLookup(cache.Lookup(Address), CacheState.Evicted, "first.example.com", inGrace: false, TimeSpan.FromSeconds(5));
        Assert.That(cache.Evictions, Is.EqualTo(1));

        cache.Learn("first.example.com", Address, TimeSpan.FromSeconds(60)); // learned again: live, and the other goes
        Assert.Multiple(() =>
        {
            Assert.That(cache.Lookup(Address).State, Is.EqualTo(CacheState.Live));
            Assert.That(cache.Lookup(other).State, Is.EqualTo(CacheState.Evicted));
        });
    }

    /// <summary>A review: an eviction was reported for the whole retention, also when the address would have expired by
    /// then anyway. It is said to be evicted while it would still have been allowed (TTL and grace), then expired (since
    /// then), then forgotten after the retention, as if it had never been evicted.</summary>
    [Test]
    public void AnEvictionIsSaidWhileTheAddressWouldStillBeAllowedThenItExpires()
    {
        var cache = new AllowlistCache(new AllowlistCacheOptions
        {
            TimeProvider = _time, MaxEntries = 1, TtlFloor = TimeSpan.Zero, Grace = TimeSpan.FromSeconds(60), ExpiredRetention = TimeSpan.FromMinutes(10),
        });
        cache.Learn("first.example.com", Address, TimeSpan.FromSeconds(30)); // allowed until 90 s
        _time.Advance(TimeSpan.FromSeconds(1));
        cache.Learn("second.example.com", IPAddress.Parse("198.18.0.11"), TimeSpan.FromSeconds(600));

        _time.Advance(TimeSpan.FromSeconds(89) - Tick);
        AssertLookup(cache.Lookup(Address), CacheState.Evicted, "first.example.com", inGrace: false, TimeSpan.FromSeconds(89) - Tick);
        _time.Advance(Tick);
        AssertLookup(cache.Lookup(Address), CacheState.Expired, "first.example.com", inGrace: false, TimeSpan.Zero);
        _time.Advance(TimeSpan.FromMinutes(10) - Tick);
        Assert.That(cache.Lookup(Address).State, Is.EqualTo(CacheState.Expired));
        _time.Advance(Tick);
        Assert.That(cache.Lookup(Address).State, Is.EqualTo(CacheState.NeverLearned));
    }

    /// <summary>A review: evicting expired addresses (which denies nothing) counted toward the "raise
    /// cache_max_entries" warning. Only addresses still allowed count; the metric counts every eviction.</summary>
    [Test]
    public void EvictingExpiredAddressesDoesNotWarn()
    {
        AllowlistCache cache = NewCache(maxEntries: 1);
        cache.Learn("old.example.com", Address, TimeSpan.FromSeconds(30));
        _time.Advance(TimeSpan.FromMinutes(5)); // expired, grace over, inside retention
        cache.Learn("new.example.com", IPAddress.Parse("198.18.0.11"), TimeSpan.FromSeconds(60));

        Assert.Multiple(() =>
        {
            Assert.That(cache.Evictions, Is.EqualTo(1));
            Assert.That(cache.TryTakeEvictionWarning(out _), Is.False);
            Assert.That(cache.Lookup(Address).State, Is.EqualTo(CacheState.NeverLearned));
        });
    }

    /// <summary>Learning an evicted address again forgets its eviction: evicted later while expired, it is not said to be
    /// evicted (the earlier record would otherwise still answer).</summary>
    [Test]
    public void AnAddressLearnedAgainAfterItsEvictionForgetsIt()
    {
        AllowlistCache cache = NewCache(maxEntries: 1);
        var other = IPAddress.Parse("198.18.0.11");
        cache.Learn("first.example.com", Address, TimeSpan.FromHours(2));
        cache.Learn("other.example.com", other, TimeSpan.FromHours(3)); // evicts Address, allowed for 2 h more
        cache.Learn("first.example.com", Address, TimeSpan.FromSeconds(30)); // learned again: evicts other
        _time.Advance(TimeSpan.FromMinutes(5)); // Address expired
        cache.Learn("third.example.com", IPAddress.Parse("198.18.0.12"), TimeSpan.FromSeconds(60)); // evicts Address, expired

        Assert.That(cache.Lookup(Address).State, Is.EqualTo(CacheState.NeverLearned));
    }

    [Test]
    public void OnlyTheLatestEvictionsAreRemembered()
    {
        AllowlistCache cache = NewCache(maxEntries: 1);
        IPAddress AddressOf(int i) => new([198, 19, (byte)(i / 250), (byte)(1 + (i % 250))]);
        for (int i = 0; i <= AllowlistCache.EvictedRemembered + 1; i++)
        {
            cache.Learn($"n{i}.example.com", AddressOf(i), TimeSpan.FromSeconds(60 + i));
        }

        Assert.Multiple(() =>
        {
            Assert.That(cache.Evictions, Is.EqualTo(AllowlistCache.EvictedRemembered + 1));
            Assert.That(cache.Lookup(AddressOf(0)).State, Is.EqualTo(CacheState.NeverLearned), "the oldest record is gone");
            Assert.That(cache.Lookup(AddressOf(1)).Name, Is.EqualTo("n1.example.com"));
            Assert.That(cache.Lookup(AddressOf(1)).State, Is.EqualTo(CacheState.Evicted));
            Assert.That(cache.Lookup(AddressOf(AllowlistCache.EvictedRemembered + 1)).State, Is.EqualTo(CacheState.Live));
        });
    }

    /// <summary>An address evicted, learned again and evicted again keeps its later record when the earlier one's turn
    /// to be forgotten comes.</summary>
    [Test]
    public void AnAddressEvictedTwiceKeepsItsLaterRecord()
    {
        AllowlistCache cache = NewCache(maxEntries: 1);
        IPAddress AddressOf(int i) => new([198, 19, (byte)(i / 250), (byte)(1 + (i % 250))]);
        cache.Learn("again.example.com", Address, TimeSpan.FromSeconds(60));
        cache.Learn("n0.example.com", AddressOf(0), TimeSpan.FromSeconds(60)); // evicts Address
        for (int i = 1; i < AllowlistCache.EvictedRemembered - 1; i++)
        {
            cache.Learn($"n{i}.example.com", AddressOf(i), TimeSpan.FromSeconds(60));
        }

        // 1,023 records now, the Address's first (sequence 1) the oldest; learning it again evicts one more (1,024).
        cache.Learn("again.example.com", Address, TimeSpan.FromSeconds(60));
        // Evicts Address again (1,025 records): the oldest, Address's first, goes from the queue, and its later record must stay.
        cache.Learn("last.example.com", AddressOf(9999), TimeSpan.FromSeconds(60));

        Assert.That(cache.Lookup(Address).State, Is.EqualTo(CacheState.Evicted));
    }

    [Test]
    public void TheEvictionWarningIsClaimedAtMostOnceAMinuteWithTheCountSinceTheLast()
    {
        AllowlistCache cache = NewCache(maxEntries: 1);
        Assert.That((cache.TryTakeEvictionWarning(out long none), none), Is.EqualTo((false, 0L)), "nothing evicted");
        cache.Learn("a.example.com", IPAddress.Parse("198.18.0.1"), TimeSpan.FromSeconds(60));
        cache.Learn("b.example.com", IPAddress.Parse("198.18.0.2"), TimeSpan.FromSeconds(60));
        cache.Learn("c.example.com", IPAddress.Parse("198.18.0.3"), TimeSpan.FromSeconds(60));

        Assert.That((cache.TryTakeEvictionWarning(out long first), first), Is.EqualTo((true, 2L)));
        cache.Learn("d.example.com", IPAddress.Parse("198.18.0.4"), TimeSpan.FromSeconds(60));
        Assert.That(cache.TryTakeEvictionWarning(out _), Is.False, "within the minute");
        _time.Advance(AllowlistCache.EvictionWarningInterval);
        Assert.That((cache.TryTakeEvictionWarning(out long later), later), Is.EqualTo((true, 1L)));
        _time.Advance(AllowlistCache.EvictionWarningInterval);
        Assert.That(cache.TryTakeEvictionWarning(out _), Is.False, "nothing evicted since");
    }

    private AllowlistCache NewCache(int maxEntries = 65536) =>
        new(new AllowlistCacheOptions { TimeProvider = _time, MaxEntries = maxEntries });
}
