using Egress.Relay;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Relay;

public sealed class DuplexRelayIdleTimeoutTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Test]
    public async Task IdleForTheTimeoutAbortsBothSides()
    {
        var time = new FakeTimeProvider();
        var a = new PipePeer();
        var b = new PipePeer();
        var session = new RelaySession(a.Side, b.Side, new RelayOptions { IdleTimeout = Timeout, TimeProvider = time });
        Task<RelayResult> run = session.RunAsync(CancellationToken.None);

        time.Advance(TimeSpan.FromSeconds(9.9));
        Assert.That(session.Cause, Is.EqualTo(RelayShutdownCause.None));
        time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.That(session.Cause, Is.EqualTo(RelayShutdownCause.IdleTimeout));
        RelayResult result = await run;

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.IdleTimeout));
            Assert.That(result.Error, Is.Null);
            Assert.That(result.Duration, Is.EqualTo(Timeout));
        });
        Assert.ThrowsAsync<TimeoutException>(async () => await PipeIo.ReadToEndAsync(a.Reader));
        Assert.ThrowsAsync<TimeoutException>(async () => await PipeIo.ReadToEndAsync(b.Reader));
        Assert.ThrowsAsync<TimeoutException>(async () => await a.Writer.FlushAsync());
        Assert.ThrowsAsync<TimeoutException>(async () => await b.Writer.FlushAsync());
    }

    [TestCase(true)]
    [TestCase(false)]
    public async Task ActivityInEitherDirectionRestartsTheIdleClock(bool fromA)
    {
        var time = new FakeTimeProvider();
        var a = new PipePeer();
        var b = new PipePeer();
        var session = new RelaySession(a.Side, b.Side, new RelayOptions { IdleTimeout = Timeout, TimeProvider = time });
        Task<RelayResult> run = session.RunAsync(CancellationToken.None);

        time.Advance(TimeSpan.FromSeconds(6));
        PipePeer sender = fromA ? a : b;
        PipePeer receiver = fromA ? b : a;
        await sender.Writer.WriteAsync("ping"u8.ToArray());
        Assert.That(await PipeIo.ReadExactlyAsync(receiver.Reader, 4), Is.EqualTo("ping"u8.ToArray()));

        time.Advance(TimeSpan.FromSeconds(9)); // 15 s since start, 9 s since the last byte
        Assert.That(session.Cause, Is.EqualTo(RelayShutdownCause.None));
        time.Advance(TimeSpan.FromSeconds(1)); // 10 s since the last byte
        Assert.That(session.Cause, Is.EqualTo(RelayShutdownCause.IdleTimeout));
        RelayResult result = await run;

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.IdleTimeout));
            Assert.That(result.Duration, Is.EqualTo(TimeSpan.FromSeconds(16)));
            Assert.That(fromA ? result.BytesAToB : result.BytesBToA, Is.EqualTo(4));
        });
    }

    [Test]
    public async Task RelayThatFinishesBeforeTheTimeoutReportsCompletion()
    {
        var time = new FakeTimeProvider();
        var a = new PipePeer();
        var b = new PipePeer();
        var session = new RelaySession(a.Side, b.Side, new RelayOptions { IdleTimeout = Timeout, TimeProvider = time });
        Task<RelayResult> run = session.RunAsync(CancellationToken.None);
        time.Advance(TimeSpan.FromSeconds(3));
        await a.Writer.CompleteAsync();
        await b.Writer.CompleteAsync();
        RelayResult result = await run;
        time.Advance(TimeSpan.FromSeconds(30)); // the disposed timer must not fire into a finished relay

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
            Assert.That(session.Cause, Is.EqualTo(RelayShutdownCause.BothCompleted));
            Assert.That(result.Duration, Is.EqualTo(TimeSpan.FromSeconds(3)));
        });
    }

    [TestCase(0)]
    [TestCase(-5)]
    public void NonPositiveTimeoutIsRejected(int seconds)
    {
        var a = new PipePeer();
        var b = new PipePeer();
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            DuplexRelay.RunAsync(a.Side, b.Side, new RelayOptions { IdleTimeout = TimeSpan.FromSeconds(seconds) }, CancellationToken.None));
    }

    [Test]
    public async Task InfiniteTimeoutMeansNoTimer()
    {
        var time = new FakeTimeProvider();
        var a = new PipePeer();
        var b = new PipePeer();
        var session = new RelaySession(a.Side, b.Side, new RelayOptions { IdleTimeout = System.Threading.Timeout.InfiniteTimeSpan, TimeProvider = time });
        Task<RelayResult> run = session.RunAsync(CancellationToken.None);
        time.Advance(TimeSpan.FromDays(3));
        Assert.That(session.Cause, Is.EqualTo(RelayShutdownCause.None));
        await a.Writer.CompleteAsync();
        await b.Writer.CompleteAsync();
        Assert.That((await run).FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
    }
}
