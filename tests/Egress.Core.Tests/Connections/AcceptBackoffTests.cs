using System.Net;
using System.Net.Sockets;
using Egress.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Connections;

public sealed class AcceptBackoffTests
{
    [Test]
    public void TheWaitDoublesFromTenMillisecondsUpToOneSecondAndStartsOverAfterASuccess()
    {
        var backoff = new AcceptBackoff();
        double[] waits = [.. Enumerable.Range(0, 9).Select(_ => backoff.Failed().TotalMilliseconds)];

        Assert.That(waits, Is.EqualTo(new double[] { 10, 20, 40, 80, 160, 320, 640, 1000, 1000 }));
        Assert.That(backoff.Failures, Is.EqualTo(9));
        backoff.Succeeded();
        Assert.That(backoff.Failed(), Is.EqualTo(TimeSpan.FromMilliseconds(10)));
    }

    [Test]
    public async Task AListenerOutOfDescriptorsWaitsTheBackoffInsteadOfSpinning()
    {
        using var logs = new LogCapture();
        var time = new FakeTimeProvider();
        int accepts = 0;
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await using var listener = new ConnectionListener(
            socket,
            _ =>
            {
                Interlocked.Increment(ref accepts);
                return ValueTask.FromException<Socket>(new SocketException((int)SocketError.TooManyOpenSockets));
            },
            "test listener",
            (s, _) => Task.CompletedTask,
            logs.Factory.CreateLogger("test"))
        {
            TimeProvider = time,
            OpenFileLimit = 512,
        };

        listener.Start();
        await WaitForAsync(() => Volatile.Read(ref accepts) == 1);
        await Task.Delay(100);
        Assert.That(Volatile.Read(ref accepts), Is.EqualTo(1), "no retry before the back-off has passed");

        for (int step = 0; step < 200 && Volatile.Read(ref accepts) == 1; step++)
        {
            time.Advance(TimeSpan.FromMilliseconds(1)); // stepped: the timer may be armed late under load
            await Task.Delay(5);
        }

        await WaitForAsync(() => Volatile.Read(ref accepts) == 2);
        await Task.Delay(50);
        time.Advance(TimeSpan.FromMilliseconds(19));
        await Task.Delay(50);
        Assert.That(Volatile.Read(ref accepts), Is.EqualTo(2), "the second wait is 20 ms");
        // The listener arms its 20 ms timer some time after the second failure (later under load): step the clock until
        // the retry comes; it can never come before 20 ms of fake time have passed since that failure.
        for (int step = 0; step < 200 && Volatile.Read(ref accepts) == 2; step++)
        {
            time.Advance(TimeSpan.FromMilliseconds(1));
            await Task.Delay(5);
        }

        await WaitForAsync(() => Volatile.Read(ref accepts) == 3);

        var line = await logs.WaitForLineAsync("accept failed");
        Assert.That(line, Does.Contain("RLIMIT_NOFILE = 512").And.Contain("retrying in 10 ms (1 in a row)"));
        Assert.That(line, Does.Not.Contain("Too many open files in system"));
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!condition())
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "condition not reached");
            await Task.Delay(5);
        }
    }
}
