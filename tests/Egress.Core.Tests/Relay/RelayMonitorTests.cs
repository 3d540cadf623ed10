using System.Reflection;
using Egress.Relay;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Relay;

/// <summary>The idle watchdog and the abort against the relay's finish (<see cref="RelayMonitor"/>).</summary>
public sealed class RelayMonitorTests
{
    private static readonly TimeSpan Idle = TimeSpan.FromSeconds(30);

    /// <summary>
    /// An idle check that was already running when the relay finished clean (Finish disposes the timer but cannot stop
    /// a callback under way) found the relay idle and aborted it: the owner reset the sockets of a connection it had
    /// just reported clean, and a framed relay's plain socket lost what was still queued on it. The check is called here
    /// as that timer callback would run, after Finish.
    /// </summary>
    [Test]
    public void AnIdleCheckRunningWhenTheRelayFinishesDoesNotAbortIt()
    {
        var time = new FakeTimeProvider();
        var abort = new CountingAbort();
        var monitor = new RelayMonitor(new RelayOptions { IdleTimeout = Idle, TimeProvider = time }, abort);
        monitor.Start(CancellationToken.None);

        RelayResult result = monitor.Finish(1, 1);
        time.Advance(Idle * 2);
        typeof(RelayMonitor).GetMethod("CheckIdle", BindingFlags.Instance | BindingFlags.NonPublic)!.Invoke(monitor, null);

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
            Assert.That(abort.Calls, Is.Zero, "the finished relay was not aborted");
            Assert.That(monitor.IsAborted, Is.False);
            Assert.That(monitor.Cause, Is.EqualTo(RelayShutdownCause.BothCompleted), "its cause stays the clean one");
        });
    }

    [Test]
    public void AnIdleRelayIsAbortedOnceWithTheIdleCause()
    {
        var time = new FakeTimeProvider();
        var abort = new CountingAbort();
        var monitor = new RelayMonitor(new RelayOptions { IdleTimeout = Idle, TimeProvider = time }, abort);
        monitor.Start(CancellationToken.None);

        time.Advance(Idle);
        monitor.Abort(RelayShutdownCause.Cancelled, null); // a second abort: recorded nowhere, no second call
        RelayResult result = monitor.Finish(0, 0);

        Assert.Multiple(() =>
        {
            Assert.That(abort.Calls, Is.EqualTo(1));
            Assert.That(abort.FirstCause, Is.EqualTo(RelayShutdownCause.IdleTimeout));
            Assert.That(monitor.IsAborted, Is.True, "an abort before the finish stands");
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.IdleTimeout));
        });
    }

    [TestCase(3600)]
    [TestCase(0)] // no idle timeout: the watchdog starts at the half-close
    public void OnceHalfClosedTheShorterTimeoutAppliesCountedFromTheHalfCloseAndDataPostponesIt(int idleSeconds)
    {
        var time = new FakeTimeProvider();
        var abort = new CountingAbort();
        var monitor = new RelayMonitor(
            new RelayOptions
            {
                IdleTimeout = idleSeconds == 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds(idleSeconds),
                HalfClosedTimeout = TimeSpan.FromSeconds(120),
                TimeProvider = time,
            },
            abort);
        monitor.Start(CancellationToken.None);

        time.Advance(TimeSpan.FromSeconds(1000));
        monitor.HalfClosed();
        time.Advance(TimeSpan.FromSeconds(100));
        monitor.Touch(); // a byte the other way
        time.Advance(TimeSpan.FromSeconds(100));
        int before = abort.Calls;
        time.Advance(TimeSpan.FromSeconds(20));

        Assert.Multiple(() =>
        {
            Assert.That(before, Is.Zero, "120 s from the last byte, not from the half-close");
            Assert.That(abort.Calls, Is.EqualTo(1));
            Assert.That(abort.FirstCause, Is.EqualTo(RelayShutdownCause.HalfClosedTimeout), "its own cause, not the idle timeout's");
            Assert.That(monitor.Finish(0, 0).Error, Is.TypeOf<TimeoutException>());
        });
    }

    [Test]
    public void AHalfClosedTimeoutNotShorterThanTheIdleOneChangesNothing()
    {
        var time = new FakeTimeProvider();
        var abort = new CountingAbort();
        var monitor = new RelayMonitor(new RelayOptions { IdleTimeout = Idle, HalfClosedTimeout = Idle * 2, TimeProvider = time }, abort);
        monitor.Start(CancellationToken.None);

        monitor.HalfClosed();
        time.Advance(Idle - TimeSpan.FromSeconds(1));
        int before = abort.Calls;
        time.Advance(TimeSpan.FromSeconds(1));

        Assert.That((before, abort.Calls, abort.FirstCause, monitor.Finish(0, 0).Error), Is.EqualTo((0, 1, RelayShutdownCause.IdleTimeout, (Exception?)null)), "the idle timeout, as without a half-close");
    }

    /// <summary>
    /// An abort that won the race with Finish but had not recorded its cause yet: Finish recorded BothCompleted, and the
    /// relay was reported clean while the abort went on to reset its sockets (a review's finding). Finish now waits for
    /// the abort's cause. The abort is held inside the owner's callback here, after its cause is recorded, so the test
    /// also shows the order: cause first, then the callback.
    /// </summary>
    [Test]
    public async Task AnAbortThatWonTheRaceWithFinishIsTheResult()
    {
        var entered = new ManualResetEventSlim();
        var release = new ManualResetEventSlim();
        var blocking = new CountingAbort { OnAbort = () => { entered.Set(); release.Wait(); } };
        var monitor = new RelayMonitor(new RelayOptions { IdleTimeout = Idle, TimeProvider = new FakeTimeProvider() }, blocking);
        monitor.Start(CancellationToken.None);

        Task aborting = Task.Run(() => monitor.Abort(RelayShutdownCause.AReadError, new IOException("reset")));
        Assert.That(entered.Wait(TimeSpan.FromSeconds(10)), Is.True);
        RelayResult result = monitor.Finish(1, 1);
        release.Set();
        await aborting.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.That((result.FirstCause, result.Error?.Message), Is.EqualTo((RelayShutdownCause.AReadError, "reset")));
    }

    private sealed class CountingAbort : IRelayAbort
    {
        public int Calls { get; private set; }

        public Action? OnAbort { get; init; }

        public RelayShutdownCause? FirstCause { get; private set; }

        public void Abort(RelayShutdownCause cause, Exception? error)
        {
            FirstCause ??= cause;
            Calls++;
            OnAbort?.Invoke();
        }
    }
}
