using System.Net;
using Egress.Policy;
using static Egress.Fuzzing.FuzzInvariantException;

namespace Egress.Fuzzing;

/// <summary>
/// The learned-addresses file's reader (<see cref="LearnedAddressesFile.Read"/>) on untrusted bytes, restoring into a
/// policy that allows some names and not others. The contract: no exception; the same counts and the same learned
/// addresses however the bytes arrive (whole, or a few at a time); no more names restored, skipped or refused than the
/// input has lines; every name restored is one the policy allows, at a non-internal address; and what was restored,
/// written again (<see cref="LearnedAddressesFile.Write"/>) and read into a new cache, restores the same.
/// </summary>
internal static class LearnedAddressesTarget
{
    private static readonly string[] Destinations = ["api.example.com:443", "*.allowed.test", "198.18.0.0/15:80"];

    public static FuzzVerdict Run(byte[] input)
    {
        var (counts, learned) = Read(input, input.Length);
        var (trickledCounts, trickled) = Read(input, 1 + (input.Length % 7));
        Require(counts.Equals(trickledCounts) && learned.SequenceEqual(trickled), "the outcome depends on how the bytes arrive");

        int lines = input.Count(b => b == (byte)'\n') + 1;
        Require(counts.Restored + counts.Expired + counts.Refused + counts.Malformed + counts.NoRoom <= lines, "more names counted than lines");
        Require(counts.HeaderValid || counts.Restored + counts.Expired + counts.Refused + counts.Malformed + counts.NoRoom == 0, "names read without the header");
        Require(learned.Count <= counts.Restored, $"{learned.Count} names learned from {counts.Restored} restored");
        var policy = EgressPolicy.Create(enabled: true, Destinations, new AllowlistCache(new AllowlistCacheOptions { TimeProvider = FixedClock.Instance }));
        foreach (var (address, name, expiresAt) in learned)
        {
            Require(policy.CheckName(name).IsAllowed && !policy.RefusesAsInternal(AddressValue.Of(address), out _), $"restored {name} {address}, which the policy refuses");
            Require(expiresAt <= FixedClock.Instance.GetUtcNow().UtcTicks + AllowlistCache.MaxTtl.Ticks, $"restored {name} {address} beyond the longest TTL");
        }

        // What was restored survives a write and a read unchanged.
        using var written = new MemoryStream();
        LearnedAddressesFile.Write(written, learned);
        var (again, relearned) = Read(written.ToArray(), int.MaxValue);
        Require(again.HeaderValid && again.Malformed == 0 && relearned.SequenceEqual(learned), "what was restored does not survive a write and a read");
        return counts.HeaderValid && counts.Restored > 0 ? FuzzVerdict.Accepted : FuzzVerdict.Rejected;
    }

    private static (LearnedAddressesFile.RestoreCounts Counts, List<(IPAddress, string, long)> Learned) Read(byte[] input, int receive)
    {
        var cache = new AllowlistCache(new AllowlistCacheOptions { TimeProvider = FixedClock.Instance });
        var policy = EgressPolicy.Create(enabled: true, Destinations, cache);
        var counts = LearnedAddressesFile.Read(new TrickleStream(input, receive), policy, cache.Now, cache.GraceTicks);
        var learned = cache.Learned(TimeSpan.Zero).ToList();
        learned.Sort((a, b) => (a.Address.ToString() + " " + a.Name).CompareTo(b.Address.ToString() + " " + b.Name));
        return (counts, learned);
    }
}

/// <summary>A clock stopped at 2026-12-05T00:00Z (1796428800000 ms), the seeds' now (the fuzzing harness has no
/// FakeTimeProvider).</summary>
internal sealed class FixedClock : TimeProvider
{
    public static readonly FixedClock Instance = new();

    public override DateTimeOffset GetUtcNow() => new(2026, 12, 5, 0, 0, 0, TimeSpan.Zero);
}
