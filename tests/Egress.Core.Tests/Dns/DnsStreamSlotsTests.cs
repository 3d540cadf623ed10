using Egress.Dns;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Dns;

public sealed class DnsStreamSlotsTests
{
    [Test]
    public void BelowTheLimitEveryStreamGetsAFreePlace()
    {
        var slots = new DnsStreamSlots(new FakeTimeProvider());

        var first = slots.TryEnter(2, out var gaveUpFirst);
        var second = slots.TryEnter(2, out var gaveUpSecond);

        Assert.That((first, second), Is.Not.EqualTo((null as DnsStreamSlot, null as DnsStreamSlot)));
        Assert.That((gaveUpFirst, gaveUpSecond, slots.Count), Is.EqualTo((null as DnsStreamSlot, null as DnsStreamSlot, 2)));
    }

    [Test]
    public void AtTheLimitANewStreamIsRefusedWhileNoOpenOneHasIdledLongEnough()
    {
        var time = new FakeTimeProvider();
        var slots = new DnsStreamSlots(time);
        slots.TryEnter(1, out _);
        time.Advance(DnsStreamSlots.MinIdleToGiveUp - TimeSpan.FromMilliseconds(1));

        Assert.That(slots.TryEnter(1, out var gaveUp), Is.Null);
        Assert.That((gaveUp, slots.Count), Is.EqualTo((null as DnsStreamSlot, 1)));
    }

    /// <summary>A red-team trial: a process in the enclave held every DNS stream the parent allows and took the DNS
    /// forwarder's places as they closed when idle; every query of every application was then answered SERVFAIL.</summary>
    [Test]
    public void AtTheLimitANewStreamTakesThePlaceOfTheOneIdleLongestWithNoQueryInFlight()
    {
        var time = new FakeTimeProvider();
        var slots = new DnsStreamSlots(time);
        var busy = slots.TryEnter(3, out _)!;
        var idlest = slots.TryEnter(3, out _)!;
        var recent = slots.TryEnter(3, out _)!;
        busy.QueryStarted(); // opened first and still answering: never given up
        time.Advance(TimeSpan.FromSeconds(5));
        recent.QueryStarted();
        recent.QueryEnded();
        time.Advance(TimeSpan.FromSeconds(2));

        var taker = slots.TryEnter(3, out var gaveUp);
        slots.Exit(idlest); // its stream ends: nothing more to give back

        Assert.Multiple(() =>
        {
            Assert.That(taker, Is.Not.Null);
            Assert.That(gaveUp, Is.SameAs(idlest));
            Assert.That((idlest.GivenUp, idlest.GivenUpToken.IsCancellationRequested), Is.EqualTo((true, true)));
            Assert.That(idlest.IdleWhenGivenUp, Is.EqualTo(TimeSpan.FromSeconds(7)));
            Assert.That((busy.GivenUp, recent.GivenUp), Is.EqualTo((false, false)));
            Assert.That(slots.Count, Is.EqualTo(3));
        });
    }

    [Test]
    public void AStreamWhoseQueriesAreAllInFlightKeepsItsPlace()
    {
        var time = new FakeTimeProvider();
        var slots = new DnsStreamSlots(time);
        var only = slots.TryEnter(1, out _)!;
        only.QueryStarted();
        time.Advance(TimeSpan.FromSeconds(30));

        Assert.That(slots.TryEnter(1, out _), Is.Null, "its query is still being answered");
        only.QueryEnded();
        Assert.That(slots.TryEnter(1, out _), Is.Null, "it just finished one");
        time.Advance(DnsStreamSlots.MinIdleToGiveUp);
        Assert.That(slots.TryEnter(1, out var gaveUp), Is.Not.Null);
        Assert.That(gaveUp, Is.SameAs(only));
    }

    [Test]
    public void AStreamThatEndsAfterItsPlaceWasTakenIsNotHurtByTheTaking()
    {
        var time = new FakeTimeProvider();
        var slots = new DnsStreamSlots(time);
        var old = slots.TryEnter(1, out _)!;
        slots.Exit(old);
        old.Dispose(); // ended and disposed before anyone chose it

        time.Advance(TimeSpan.FromSeconds(5));
        Assert.That(slots.TryEnter(1, out var gaveUp), Is.Not.Null);
        Assert.That(gaveUp, Is.Null, "an ended stream holds no place");
        Assert.DoesNotThrow(() => old.GiveUp(TimeSpan.Zero), "a race: chosen as its stream ended");
    }
}
