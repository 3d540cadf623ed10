using System.Collections.Concurrent;
using System.Net.Sockets;
using Egress.Tests.Relay;
using Egress.Tunnel;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Tunnel;

/// <summary>The enclave's pool of clean v2 tunnel streams: bounded, most recent first, idle expiry, dead streams never rented.</summary>
public sealed class TunnelStreamPoolTests
{
    private static readonly TimeSpan Expiry = TimeSpan.FromSeconds(30);

    private readonly List<SocketPair> _pairs = [];

    private FakeTimeProvider _time = null!;

    [SetUp]
    public void SetUp() => _time = new FakeTimeProvider();

    [TearDown]
    public void TearDown()
    {
        _pairs.ForEach(pair => pair.Dispose());
        _pairs.Clear();
    }

    [Test]
    public async Task ThePoolIsBoundedAndRentsTheMostRecentFirst()
    {
        using var pool = new TunnelStreamPool(2, Expiry, _time);
        Socket first = await StreamAsync();
        Socket second = await StreamAsync();
        Socket third = await StreamAsync();

        bool[] taken = [pool.TryReturn(first), pool.TryReturn(second), pool.TryReturn(third)];

        Assert.Multiple(() =>
        {
            Assert.That(taken, Is.EqualTo(new[] { true, true, false }), "the third is the caller's to close");
            Assert.That(pool.TryRent(), Is.SameAs(second));
            Assert.That(pool.TryRent(), Is.SameAs(first));
            Assert.That(pool.TryRent(), Is.Null);
        });
    }

    [Test]
    public async Task AnExpiredStreamIsClosedNotRented()
    {
        using var pool = new TunnelStreamPool(4, Expiry, _time);
        Socket stale = await StreamAsync();
        pool.TryReturn(stale);
        _time.Advance(Expiry);

        Assert.Multiple(() =>
        {
            Assert.That(pool.TryRent(), Is.Null);
            Assert.That(() => stale.Available, Throws.InstanceOf<ObjectDisposedException>(), "closed");
        });
    }

    [Test]
    public async Task TrimClosesOnlyTheExpired()
    {
        using var pool = new TunnelStreamPool(4, Expiry, _time);
        pool.TryReturn(await StreamAsync());
        _time.Advance(Expiry / 2);
        Socket fresh = await StreamAsync();
        pool.TryReturn(fresh);
        _time.Advance(Expiry / 2);

        Assert.Multiple(() =>
        {
            Assert.That(pool.Trim(), Is.EqualTo(1));
            Assert.That(pool.TryRent(), Is.SameAs(fresh));
        });
    }

    [TestCase("closed")]
    [TestCase("reset")]
    [TestCase("unexpected bytes")]
    public async Task AStreamTheParentClosedOrSpokeOnIsNeverRented(string what)
    {
        // egress-host restarted (closed or reset its end), or sent bytes nobody asked for: the stream cannot carry a request.
        using var pool = new TunnelStreamPool(4, Expiry, _time);
        Socket healthy = await StreamAsync();
        pool.TryReturn(healthy);
        var pair = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        _pairs.Add(pair);
        pool.TryReturn(pair.Left);
        switch (what)
        {
            case "closed":
                pair.Right.Shutdown(SocketShutdown.Send);
                break;
            case "reset":
                Egress.Sockets.SocketReset.Reset(pair.Right);
                break;
            default:
                await pair.Right.SendAsync(new byte[] { 1 });
                break;
        }

        await Task.Delay(50); // the FIN, RST or byte arrives

        Assert.That(pool.TryRent(), Is.SameAs(healthy), "the dead one was skipped and closed");
    }

    [Test]
    public async Task ConcurrentRentsAndReturnsNeverExceedTheBoundNorHandAStreamOutTwice()
    {
        // Every stream is in exactly one place: the pool, the spare queue (new streams, and those the full pool refused), or one task.
        const int capacity = 4;
        using var pool = new TunnelStreamPool(capacity, Expiry, _time);
        var spare = new ConcurrentQueue<Socket>();
        for (int i = 0; i < 12; i++)
        {
            spare.Enqueue(await StreamAsync());
        }

        var inUse = new ConcurrentDictionary<Socket, int>();
        int doubleRents = 0;
        int maxPooled = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, 4000), async (_, _) =>
        {
            Socket? mine = pool.TryRent();
            if (mine is null && !spare.TryDequeue(out mine))
            {
                return;
            }

            if (!inUse.TryAdd(mine, 0))
            {
                Interlocked.Increment(ref doubleRents);
                return;
            }

            await Task.Yield();
            inUse.TryRemove(mine, out int _);
            if (!pool.TryReturn(mine))
            {
                spare.Enqueue(mine);
            }

            int count = pool.Count;
            int seen;
            while ((seen = Volatile.Read(ref maxPooled)) < count && Interlocked.CompareExchange(ref maxPooled, count, seen) != seen)
            {
            }
        });
        int pooled = 0;
        while (pool.TryRent() is not null)
        {
            pooled++;
        }

        Assert.Multiple(() =>
        {
            Assert.That(doubleRents, Is.Zero, "a stream handed to two users at once");
            Assert.That(maxPooled, Is.LessThanOrEqualTo(capacity));
            Assert.That(pooled + spare.Count, Is.EqualTo(12), "no stream lost or duplicated");
        });
    }

    [Test]
    public async Task DisposeClosesEveryPooledStreamAndTakesNoMore()
    {
        var pool = new TunnelStreamPool(4, Expiry, _time);
        Socket pooled = await StreamAsync();
        pool.TryReturn(pooled);

        pool.Dispose();
        bool tookAnother = pool.TryReturn(await StreamAsync());

        Assert.Multiple(() =>
        {
            Assert.That(() => pooled.Available, Throws.InstanceOf<ObjectDisposedException>());
            Assert.That(tookAnother, Is.False);
        });
    }

    private async Task<Socket> StreamAsync()
    {
        var pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        _pairs.Add(pair);
        return pair.Left;
    }
}
