using System.Net;
using Egress.Dns.Upstream;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Dns;

/// <summary>
/// The quiet-upstream order of <see cref="DnsUpstreamClient"/> on a controlled clock: an upstream that let a UDP query
/// go unanswered <see cref="DnsUpstreamClient.QuietAfterMisses"/> times in a row is asked after the others for
/// <see cref="DnsUpstreamClient.QuietPeriod"/>.
/// </summary>
public sealed class DnsUpstreamQuietTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(10);

    /// <summary>
    /// When the quiet period of a still black-holed first upstream ends, one query asks it first again (and pays its
    /// share of the timeout), not every query that starts before that one times out: at 1,000 queries a second with the
    /// default 2 s over two upstreams, that was a thousand queries held 1 s each, every 30 s.
    /// </summary>
    [Test]
    public async Task OnlyOneQueryAsksAQuietUpstreamFirstWhenItsQuietPeriodEnds()
    {
        var time = new FakeTimeProvider();
        await using var silent = new FakeUpstreamDns((_, _) => FakeAnswer.Silence);
        await using var good = new FakeUpstreamDns(TestZone.Answer);
        using var client = new DnsUpstreamClient([silent.EndPoint, good.EndPoint], TimeSpan.FromSeconds(2), time);

        // The first queries wait out their share at the silent upstream, which then goes quiet.
        for (int i = 1; i <= DnsUpstreamClient.QuietAfterMisses; i++)
        {
            Task<int> first = ResolveAsync(client, (ushort)i, $"n{i}.x.test");
            await UntilAsync(() => silent.Queries.Count == i);
            time.Advance(TimeSpan.FromMilliseconds(1100));
            Assert.That(await first.WaitAsync(Guard), Is.GreaterThan(0));
        }

        // Its quiet period ends; five queries start at once.
        time.Advance(DnsUpstreamClient.QuietPeriod + TimeSpan.FromSeconds(1));
        int before = silent.Queries.Count;
        Task<int>[] burst = [.. Enumerable.Range(0, 5).Select(i => ResolveAsync(client, (ushort)(10 + i), $"b{i}.x.test"))];
        await UntilAsync(() => silent.Queries.Count + good.Queries.Count >= (2 * DnsUpstreamClient.QuietAfterMisses) + 1 + 5, TimeSpan.FromSeconds(2), throwOnTimeout: false);
        await Task.Delay(200); // any further query to the silent upstream arrives
        int askedTheSilentOne = silent.Queries.Count - before;

        time.Advance(TimeSpan.FromMilliseconds(1100)); // the prober's share ends; it goes on to the good upstream
        int[] lengths = await Task.WhenAll(burst).WaitAsync(Guard);

        Assert.Multiple(() =>
        {
            Assert.That(lengths, Has.All.GreaterThan(0));
            Assert.That(askedTheSilentOne, Is.EqualTo(1), "one query probes the upstream whose quiet period ended; the others ask it last");
        });
    }

    private static Task<int> ResolveAsync(DnsUpstreamClient client, ushort id, string name)
    {
        byte[] query = DnsQueryBytes.Build(id, name);
        byte[] response = new byte[65536];
        return client.ResolveAsync(query, response, CancellationToken.None).AsTask();
    }

    private static async Task UntilAsync(Func<bool> condition, TimeSpan? within = null, bool throwOnTimeout = true)
    {
        var end = DateTime.UtcNow + (within ?? Guard);
        while (!condition())
        {
            if (DateTime.UtcNow > end)
            {
                if (throwOnTimeout)
                {
                    throw new TimeoutException("condition not met");
                }

                return;
            }

            await Task.Delay(10);
        }
    }
}
