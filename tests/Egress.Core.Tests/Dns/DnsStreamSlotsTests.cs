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
    public void AtTheLimitANewStreamIsRefusedWhileEveryOpenOneForwardedAQueryLately()
    {
        var time = new FakeTimeProvider();
        var slots = new DnsStreamSlots(time);
        var only = slots.TryEnter(1, out _)!;
        Forward(only);
        time.Advance(DnsStreamSlots.MinIdleToGiveUp - TimeSpan.FromMilliseconds(1));

        Assert.That(slots.TryEnter(1, out var gaveUp), Is.Null);
        Assert.That((gaveUp, slots.Count, only.GivenUp), Is.EqualTo((null as DnsStreamSlot, 1, false)));
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
        Forward(idlest);
        busy.QueryStarted(); // opened first and still answering: never given up
        time.Advance(TimeSpan.FromSeconds(5));
        Forward(recent);
        time.Advance(TimeSpan.FromSeconds(2));

        var taker = slots.TryEnter(3, out var gaveUp);
        slots.Exit(idlest); // its stream ends: nothing more to give back

        Assert.Multiple(() =>
        {
            Assert.That(taker, Is.Not.Null);
            Assert.That(gaveUp, Is.SameAs(idlest));
            Assert.That((idlest.GivenUp, idlest.GivenUpToken.IsCancellationRequested), Is.EqualTo((true, true)));
            Assert.That(idlest.GivenUpText, Is.EqualTo("the one idle longest (7 s since its last query went upstream)"));
            Assert.That((busy.GivenUp, recent.GivenUp), Is.EqualTo((false, false)));
            Assert.That(slots.Count, Is.EqualTo(3));
        });
    }

    /// <summary>A second red-team round: opening new streams faster than one place a second kept every place younger than
    /// the idle minimum, and the forwarder was refused. A stream that has forwarded nothing gives its place at once, the
    /// oldest first, before any stream whose queries went upstream.</summary>
    [Test]
    public void AStreamThatForwardedNothingGivesItsPlaceFirstAndAtOnce()
    {
        var time = new FakeTimeProvider();
        var slots = new DnsStreamSlots(time);
        var forwarder = slots.TryEnter(3, out _)!;
        Forward(forwarder);
        time.Advance(TimeSpan.FromSeconds(20)); // idle long, but it forwarded
        var bareOld = slots.TryEnter(3, out _)!;
        time.Advance(TimeSpan.FromMilliseconds(100));
        var bareNew = slots.TryEnter(3, out _)!;

        slots.TryEnter(3, out var first);
        slots.TryEnter(3, out var second);

        Assert.Multiple(() =>
        {
            Assert.That(first, Is.SameAs(bareOld), "the oldest stream that forwarded nothing, at once");
            Assert.That(first!.GivenUpText, Is.EqualTo("one that had no query forwarded upstream yet (open 0.1 s)"));
            Assert.That(second, Is.SameAs(bareNew), "then the next such: the taker of the first place is newer");
            Assert.That(forwarder.GivenUp, Is.False);
        });
    }

    /// <summary>A second red-team round: a query for a denied name on each held stream every second kept them all "busy"
    /// at no cost upstream (the parent answers NXDOMAIN itself). Only a forwarded query is activity.</summary>
    [Test]
    public void AQueryThatWasNotForwardedIsNoActivity()
    {
        var time = new FakeTimeProvider();
        var slots = new DnsStreamSlots(time);
        var denying = slots.TryEnter(1, out _)!;
        Forward(denying);
        time.Advance(TimeSpan.FromSeconds(2));
        denying.QueryStarted();
        denying.QueryEnded(forwarded: false);

        Assert.That(slots.TryEnter(1, out var gaveUp), Is.Not.Null);
        Assert.That(gaveUp, Is.SameAs(denying));
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
        only.QueryEnded(forwarded: true);
        Assert.That(slots.TryEnter(1, out _), Is.Null, "it just forwarded one");
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

    private static void Forward(DnsStreamSlot slot)
    {
        slot.QueryStarted();
        slot.QueryEnded(forwarded: true);
    }
}
