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

    private sealed class CountingAbort : IRelayAbort
    {
        public int Calls { get; private set; }

        public RelayShutdownCause? FirstCause { get; private set; }

        public void Abort(RelayShutdownCause cause, Exception? error)
        {
            FirstCause ??= cause;
            Calls++;
        }
    }
}
