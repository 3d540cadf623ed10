using System.Net;
using Egress.Proxy;
using Egress.Tunnel;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Proxy;

public sealed class RecentDestinationFailuresTests
{
    private static readonly IPEndPoint Dead = new(IPAddress.Parse("198.51.100.31"), 443);
    private static readonly IPAddress[] Others = [IPAddress.Parse("198.51.100.32"), IPAddress.Parse("198.51.100.31")];

    [Test]
    public void ATimeoutIsRememberedWithTheOtherAddressesAndForgottenAfterTheRetention()
    {
        var time = new FakeTimeProvider();
        var failures = new RecentDestinationFailures(time);

        failures.Record(Dead, TunnelStatus.TimedOut, "api.example.com", Others);
        time.Advance(TimeSpan.FromSeconds(12));
        bool remembered = failures.TryGet(Dead, out RecentDestinationFailures.Failure failure, out TimeSpan ago);
        time.Advance(RecentDestinationFailures.Retention - TimeSpan.FromSeconds(12));

        Assert.Multiple(() =>
        {
            Assert.That((remembered, failure.Status, ago), Is.EqualTo((true, TunnelStatus.TimedOut, TimeSpan.FromSeconds(12))));
            Assert.That(failure.Others, Is.EqualTo(new[] { Others[0] }), "its own address is not one of its others");
            Assert.That(failures.Contains(Dead), Is.False, "forgotten after the retention");
        });
    }

    /// <summary>A trial: when the memory ran out, a burst of connections all dialled the dead address first again.</summary>
    [Test]
    public void AfterTheMemoryOneCallerProbesWhileTheOthersStillTryItLast()
    {
        var time = new FakeTimeProvider();
        var failures = new RecentDestinationFailures(time);
        failures.Record(Dead, TunnelStatus.TimedOut, "api.example.com", Others);
        time.Advance(RecentDestinationFailures.Memory);

        bool first = failures.TryGet(Dead, out var probed, out _, out bool probe);
        bool second = failures.TryGet(Dead, out _, out TimeSpan ago, out bool secondProbe);
        time.Advance(RecentDestinationFailures.Memory);
        bool afterALostProbe = failures.TryGet(Dead, out _, out _);
        bool besideTheNextProbe = failures.TryGet(Dead, out _, out _);

        Assert.Multiple(() =>
        {
            Assert.That((first, probe, probed.Status), Is.EqualTo((false, true, TunnelStatus.TimedOut)), "the first caller probes: it dials the destination first");
            Assert.That(secondProbe, Is.False);
            Assert.That((second, ago), Is.EqualTo((true, RecentDestinationFailures.Memory)), "the others try it last meanwhile");
            Assert.That(failures.Contains(Dead), Is.True, "still ordered last among a failover's candidates");
            Assert.That((afterALostProbe, besideTheNextProbe), Is.EqualTo((false, true)), "a probe that never reported is replaced after another memory");
        });
    }

    [Test]
    public void AProbeThatFailsIsRememberedAnewAndOneThatConnectsForgetsIt()
    {
        var time = new FakeTimeProvider();
        var failures = new RecentDestinationFailures(time);
        failures.Record(Dead, TunnelStatus.TimedOut, "api.example.com", Others);
        time.Advance(RecentDestinationFailures.Memory);
        failures.TryGet(Dead, out _, out _); // the probe

        failures.Record(Dead, TunnelStatus.TimedOut, "api.example.com", Others);
        time.Advance(RecentDestinationFailures.Memory - TimeSpan.FromSeconds(1));
        bool afterAFailedProbe = failures.TryGet(Dead, out _, out TimeSpan ago);
        time.Advance(TimeSpan.FromSeconds(1));
        failures.TryGet(Dead, out _, out _); // the next probe
        failures.Forget(Dead); // it connected

        Assert.That((afterAFailedProbe, ago), Is.EqualTo((true, RecentDestinationFailures.Memory - TimeSpan.FromSeconds(1))));
        Assert.That((failures.Contains(Dead), failures.IsEmpty), Is.EqualTo((false, true)));
    }

    /// <summary>A review: expired failures were dropped only when their own destination was looked up again, so the
    /// lock-free fast path (IsEmpty) never came back after the first failure.</summary>
    [Test]
    public void EverythingIsForgottenOnceTheNewestFailureIsOlderThanTheRetention()
    {
        var time = new FakeTimeProvider();
        var failures = new RecentDestinationFailures(time);
        failures.Record(Dead, TunnelStatus.Unreachable, "api.example.com", Others);
        time.Advance(RecentDestinationFailures.Retention);

        failures.Forget(new IPEndPoint(IPAddress.Parse("198.51.100.99"), 443)); // another destination connected

        Assert.That(failures.IsEmpty, Is.True);
    }

    [Test]
    public void ARefusalIsNotRememberedAndForgetsAnEarlierTimeout()
    {
        var failures = new RecentDestinationFailures(new FakeTimeProvider());
        failures.Record(Dead, TunnelStatus.TimedOut, "api.example.com", Others);

        failures.Record(Dead, TunnelStatus.ConnectionRefused, "api.example.com", Others);

        Assert.That((failures.Contains(Dead), failures.IsEmpty), Is.EqualTo((false, true)));
    }
}
