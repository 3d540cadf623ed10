using System.Net;
using System.Net.Sockets;
using Egress.Dns;
using Egress.Dns.Upstream;
using Egress.Dns.Wire;
using Egress.Gateway;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Dns;

/// <summary>
/// The parent's shared upstream UDP sockets against a hand-driven upstream: strict answer matching (ID and
/// question; anything else ignored), late answers, ID exhaustion, rotation, aborts and refusals.
/// </summary>
public sealed class DnsUpstreamSocketTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(10);

    private Socket _upstream = null!;
    private IPEndPoint _upstreamEndPoint = null!;

    [SetUp]
    public void SetUp()
    {
        _upstream = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        _upstream.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _upstreamEndPoint = (IPEndPoint)_upstream.LocalEndPoint!;
    }

    [TearDown]
    public void TearDown() => _upstream.Dispose();

    [Test]
    public async Task SpoofedOrStrayDatagramsAreIgnoredAndTheMatchingAnswerIsTaken()
    {
        using var socket = new DnsUpstreamSocket(_upstreamEndPoint, 0);
        socket.Start();
        byte[] query = DnsQueryBytes.Build(0x1234, "a.x.test");
        DnsUpstreamQuery pending = DnsUpstreamQuery.Rent(query, new byte[65536], long.MaxValue);
        Assert.That(socket.TrySend(pending), Is.True);
        var (sent, from) = await ReceiveQueryAsync();
        ushort wireId = DnsMessage.ReadId(sent);

        byte[] wrongId = AnswerTo(sent);
        DnsMessage.WriteId(wrongId, (ushort)(wireId + 1));
        byte[] wrongName = AnswerTo(DnsQueryBytes.Build(wireId, "b.x.test"));
        byte[] wrongType = AnswerTo(DnsQueryBytes.Build(wireId, "a.x.test", type: 28));
        byte[] notAResponse = [.. sent];
        byte[] real = AnswerTo(sent);
        real[^1] = 0x01; // Mark it apart from the decoys.

        // From another source port: the kernel drops it (the socket is connected to the upstream).
        using (var spoofer = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))
        {
            spoofer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            await spoofer.SendToAsync(AnswerTo(sent), from);
        }

        foreach (byte[] decoy in new[] { wrongId, wrongName, wrongType, notAResponse, new byte[5], real })
        {
            await _upstream.SendToAsync(decoy, from);
        }

        int length = await pending.WaitAsync().AsTask().WaitAsync(Guard);
        Assert.That(pending.Response[..length].ToArray(), Is.EqualTo(real));
        pending.Return();
        Assert.That(socket.PendingCount, Is.Zero);
    }

    [Test]
    public async Task ADatagramWithTheQuerysIdButAnotherQuestionIsNotedAndItsQueryStillTimesOut()
    {
        using var socket = new DnsUpstreamSocket(_upstreamEndPoint, 0);
        socket.Start();
        DnsUpstreamQuery pending = DnsUpstreamQuery.Rent(DnsQueryBytes.Build(7, "a.x.test"), new byte[65536], deadline: 100);
        Assert.That(socket.TrySend(pending), Is.True);
        var (sent, from) = await ReceiveQueryAsync();
        ushort wireId = DnsMessage.ReadId(sent);
        DnsUpstreamQuery other = DnsUpstreamQuery.Rent(DnsQueryBytes.Build(8, "b.x.test"), new byte[65536], deadline: 100);
        Assert.That(socket.TrySend(other), Is.True);
        await ReceiveQueryAsync();

        await _upstream.SendToAsync(AnswerTo(DnsQueryBytes.Build(wireId, "a.x.test", type: 28)), from);
        await _upstream.SendToAsync(AnswerTo(sent), from); // then a matching answer is still taken...
        int length = await pending.WaitAsync().AsTask().WaitAsync(Guard);
        socket.Sweep(now: 100); // ...and a query that saw no such datagram is not marked
        int otherResult = await other.WaitAsync().AsTask().WaitAsync(Guard);

        Assert.Multiple(() =>
        {
            Assert.That(length, Is.GreaterThan(0));
            Assert.That(pending.SawMismatch, Is.True);
            Assert.That((otherResult, other.SawMismatch), Is.EqualTo((DnsUpstreamQuery.Failed, false)));
        });
        pending.Return();
        other.Return();
        Assert.That(pending.SawMismatch, Is.False, "a pooled slot starts clean: Return clears it (a slot rented anew may be another one)");
    }

    [Test]
    public async Task AnAnswerArrivingAfterItsQueryTimedOutIsIgnored()
    {
        using var socket = new DnsUpstreamSocket(_upstreamEndPoint, 0);
        socket.Start();
        DnsUpstreamQuery first = DnsUpstreamQuery.Rent(DnsQueryBytes.Build(1, "a.x.test"), new byte[65536], deadline: 100);
        Assert.That(socket.TrySend(first), Is.True);
        var (firstSent, from) = await ReceiveQueryAsync();

        socket.Sweep(now: 100);
        Assert.That(await first.WaitAsync().AsTask().WaitAsync(Guard), Is.EqualTo(DnsUpstreamQuery.Failed));
        first.Return();

        // Another name: even should the random wire ID repeat, the late answer cannot match this query.
        DnsUpstreamQuery second = DnsUpstreamQuery.Rent(DnsQueryBytes.Build(2, "b.x.test"), new byte[65536], long.MaxValue);
        Assert.That(socket.TrySend(second), Is.True);
        var (secondSent, _) = await ReceiveQueryAsync();

        await _upstream.SendToAsync(AnswerTo(firstSent), from);
        byte[] answer = AnswerTo(secondSent);
        await _upstream.SendToAsync(answer, from);

        int length = await second.WaitAsync().AsTask().WaitAsync(Guard);
        Assert.That(second.Response[..length].ToArray(), Is.EqualTo(answer));
        second.Return();
    }

    [Test]
    public async Task AllWireIdsInUseRefusesTheNextQueryAndTheSweepFailsThemAll()
    {
        using var socket = new DnsUpstreamSocket(_upstreamEndPoint, 0);
        socket.Start();
        var pending = new DnsUpstreamQuery[ushort.MaxValue + 1];
        var ids = new HashSet<ushort>();
        for (int i = 0; i < pending.Length; i++)
        {
            byte[] query = DnsQueryBytes.Build(7, "a.x.test");
            pending[i] = DnsUpstreamQuery.Rent(query, new byte[64], deadline: 100);
            Assert.That(socket.TrySend(pending[i]), Is.True);
            ids.Add(DnsMessage.ReadId(query));
        }

        Assert.That(ids, Has.Count.EqualTo(65536));
        DnsUpstreamQuery extra = DnsUpstreamQuery.Rent(DnsQueryBytes.Build(7, "a.x.test"), new byte[64], deadline: 100);
        Assert.That(socket.TrySend(extra), Is.False);
        extra.Return();

        socket.Sweep(now: 100);
        foreach (DnsUpstreamQuery query in pending)
        {
            Assert.That(await query.WaitAsync().AsTask().WaitAsync(Guard), Is.EqualTo(DnsUpstreamQuery.Failed));
            query.Return();
        }

        Assert.That(socket.PendingCount, Is.Zero);
    }

    [Test]
    public async Task PoolRotatesAnAgedSocketAndTheRetiredOneStillDeliversItsPendingAnswer()
    {
        var time = new FakeTimeProvider();
        using var pool = new DnsUpstreamSocketPool(_upstreamEndPoint, time, socketCount: 1);
        DnsUpstreamQuery first = DnsUpstreamQuery.Rent(DnsQueryBytes.Build(1, "a.x.test"), new byte[65536], long.MaxValue);
        Assert.That(pool.TrySend(first), Is.True);
        var (firstSent, firstFrom) = await ReceiveQueryAsync();

        time.Advance(DnsUpstreamSocketPool.MaxSocketAge);
        DnsUpstreamQuery second = DnsUpstreamQuery.Rent(DnsQueryBytes.Build(2, "b.x.test"), new byte[65536], long.MaxValue);
        Assert.That(pool.TrySend(second), Is.True);
        var (secondSent, secondFrom) = await ReceiveQueryAsync();
        Assert.That(secondFrom, Is.Not.EqualTo(firstFrom));

        byte[] firstAnswer = AnswerTo(firstSent);
        await _upstream.SendToAsync(firstAnswer, firstFrom);
        Assert.That(first.Response[..await first.WaitAsync().AsTask().WaitAsync(Guard)].ToArray(), Is.EqualTo(firstAnswer));
        Assert.That(first.Socket!.IsClosed, Is.True, "the retired socket closes once drained");
        first.Return();

        byte[] secondAnswer = AnswerTo(secondSent);
        await _upstream.SendToAsync(secondAnswer, secondFrom);
        Assert.That(second.Response[..await second.WaitAsync().AsTask().WaitAsync(Guard)].ToArray(), Is.EqualTo(secondAnswer));
        Assert.That(second.Socket!.IsClosed, Is.False);
        second.Return();
    }

    [Test]
    public async Task PoolReplacesASocketAfterItsQueryBudget()
    {
        using var pool = new DnsUpstreamSocketPool(_upstreamEndPoint, new FakeTimeProvider(), socketCount: 1);
        var sources = new HashSet<EndPoint>();
        for (int i = 0; i <= DnsUpstreamSocketPool.MaxQueriesPerSocket; i++)
        {
            DnsUpstreamQuery query = DnsUpstreamQuery.Rent(DnsQueryBytes.Build(1, "a.x.test"), new byte[65536], long.MaxValue);
            Assert.That(pool.TrySend(query), Is.True);
            var (sent, from) = await ReceiveQueryAsync();
            sources.Add(from);
            byte[] answer = AnswerTo(sent);
            await _upstream.SendToAsync(answer, from);
            Assert.That(await query.WaitAsync().AsTask().WaitAsync(Guard), Is.EqualTo(answer.Length));
            query.Return();
        }

        Assert.That(sources, Has.Count.EqualTo(2));
    }

    [Test]
    public async Task AQueryTooLargeForUdpFailsAloneWithoutClosingTheSharedSocketOrItsPendingQuery()
    {
        using var pool = new DnsUpstreamSocketPool(_upstreamEndPoint, new FakeTimeProvider(), socketCount: 1);
        DnsUpstreamQuery normal = DnsUpstreamQuery.Rent(DnsQueryBytes.Build(1, "a.x.test"), new byte[65536], long.MaxValue);
        Assert.That(pool.TrySend(normal), Is.True);
        var (sent, from) = await ReceiveQueryAsync();
        DnsUpstreamSocket shared = normal.Socket!;

        // One byte over what a UDP datagram carries (65,507): the kernel refuses the send with EMSGSIZE.
        byte[] huge = DnsQueryBytes.BuildPadded(2, "b.x.test", DnsForwarding.MaxUdpMessage + 1);
        DnsUpstreamQuery oversize = DnsUpstreamQuery.Rent(huge, new byte[65536], long.MaxValue);
        Assert.That(pool.TrySend(oversize), Is.False);
        oversize.Return();
        Assert.That((shared.IsClosed, shared.PendingCount), Is.EqualTo((false, 1)), "the shared socket and its pending query");

        byte[] answer = AnswerTo(sent);
        await _upstream.SendToAsync(answer, from);
        Assert.That(normal.Response[..await normal.WaitAsync().AsTask().WaitAsync(Guard)].ToArray(), Is.EqualTo(answer));
        normal.Return();

        // The same socket (same source port) carries the next query.
        DnsUpstreamQuery next = DnsUpstreamQuery.Rent(DnsQueryBytes.Build(3, "c.x.test"), new byte[65536], long.MaxValue);
        Assert.That(pool.TrySend(next), Is.True);
        Assert.That(next.Socket, Is.SameAs(shared));
        var (_, nextFrom) = await ReceiveQueryAsync();
        Assert.That(nextFrom, Is.EqualTo(from));
        shared.TryCancel(next, DnsUpstreamQuery.Aborted);
        await next.WaitAsync().AsTask().WaitAsync(Guard);
        next.Return();
    }

    [Test]
    public async Task ClientSendsAQueryTooLargeForUdpOverTcpWhileAPendingUdpQueryStillGetsItsAnswer()
    {
        await using var fake = new FakeUpstreamDns(TestZone.Answer);
        using var client = new DnsUpstreamClient([fake.EndPoint], TimeSpan.FromMinutes(5), TimeProvider.System);
        byte[] silentResponse = new byte[65536];
        using var abort = new CancellationTokenSource();
        Task<int> silent = client.ResolveAsync(DnsQueryBytes.Build(1, "slow.x.test"), silentResponse, abort.Token).AsTask();
        while (fake.Queries.IsEmpty)
        {
            await Task.Delay(10);
        }

        byte[] response = new byte[65536];
        byte[] huge = DnsQueryBytes.BuildPadded(0x6565, "a.x.test", DnsForwarding.MaxUdpMessage + 1);
        int length = await client.ResolveAsync(huge, response, CancellationToken.None).AsTask().WaitAsync(Guard);
        Assert.That(length, Is.GreaterThan(0));
        Assert.That((DnsMessage.ReadId(response), DnsQueryBytes.Rcode(response[..length]), DnsQueryBytes.AnswerCount(response[..length])), Is.EqualTo((0x6565, 0, 1)));
        Assert.That(fake.Queries, Is.EqualTo(new[] { new FakeQuery("slow.x.test", 1, false), new FakeQuery("a.x.test", 1, true) }));

        // The UDP query pending meanwhile was not failed by the oversize one: only the abort ends it.
        Assert.That(silent.IsCompleted, Is.False);
        await abort.CancelAsync();
        Assert.That(async () => await silent.WaitAsync(Guard), Throws.InstanceOf<OperationCanceledException>());
    }

    /// <summary>A review: a socket closed by a dispose (not by its upstream) left its pending queries' failure named
    /// <c>Interrupted</c> or <c>Success</c>. Such a close is no upstream's error; two refusing upstreams are each named.</summary>
    [Test]
    public async Task ASocketErrorIsNamedPerUpstreamAndADisposeIsNone()
    {
        using (var socket = new DnsUpstreamSocket(_upstreamEndPoint, 0))
        {
            socket.Start();
            DnsUpstreamQuery pending = DnsUpstreamQuery.Rent(DnsQueryBytes.Build(5, "a.x.test"), new byte[65536], long.MaxValue);
            Assert.That(socket.TrySend(pending), Is.True);
            await ReceiveQueryAsync();
            socket.Dispose();
            Assert.That(await pending.WaitAsync().AsTask().WaitAsync(Guard), Is.EqualTo(DnsUpstreamQuery.SocketFailed));
            await Task.Delay(50); // the receive loop's own end, after the dispose
            Assert.That(socket.FailedWith, Is.EqualTo(SocketError.Success));
            pending.Return();
        }

        IPEndPoint first = DeadPort(), second = DeadPort();
        using var client = new DnsUpstreamClient([first, second], TimeSpan.FromMinutes(10), TimeProvider.System);
        int result = await client.ResolveAsync(DnsQueryBytes.Build(6, "a.x.test"), new byte[65536], CancellationToken.None).AsTask().WaitAsync(Guard);

        Assert.That((result, client.DescribeFailure(result)), Is.EqualTo((DnsUpstreamQuery.SocketFailed,
            $"the upstream refused or was unreachable (socket error; latest per upstream: {first} over UDP: ConnectionRefused; {second} over UDP: ConnectionRefused)")));
    }

    private static IPEndPoint DeadPort()
    {
        using var gone = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        gone.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return (IPEndPoint)gone.LocalEndPoint!;
    }

    [Test]
    public async Task ClientAbortEndsAQueryTheUpstreamIgnores()
    {
        using var client = new DnsUpstreamClient([_upstreamEndPoint], TimeSpan.FromMinutes(5), TimeProvider.System);
        using var abort = new CancellationTokenSource();
        byte[] query = DnsQueryBytes.Build(0x4242, "a.x.test");
        Task<int> resolving = client.ResolveAsync(query, new byte[65536], abort.Token).AsTask();
        await ReceiveQueryAsync();

        await abort.CancelAsync();
        Assert.That(async () => await resolving.WaitAsync(Guard), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(query, Is.EqualTo(DnsQueryBytes.Build(0x4242, "a.x.test")));
    }

    [Test]
    public async Task ClientMovesOnFromARefusingUpstreamToTheNext()
    {
        IPEndPoint closed;
        using (var gone = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))
        {
            gone.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            closed = (IPEndPoint)gone.LocalEndPoint!;
        }

        // Long enough that only the refusal (ICMP port unreachable), not the timeout, can end the first attempt in time.
        using var client = new DnsUpstreamClient([closed, _upstreamEndPoint], TimeSpan.FromMinutes(10), TimeProvider.System);
        byte[] response = new byte[65536];
        Task<int> resolving = client.ResolveAsync(DnsQueryBytes.Build(9, "a.x.test"), response, CancellationToken.None).AsTask();
        var (sent, from) = await ReceiveQueryAsync().WaitAsync(Guard);
        byte[] answer = AnswerTo(sent);
        await _upstream.SendToAsync(answer, from);

        int length = await resolving.WaitAsync(Guard);
        DnsMessage.WriteId(answer, 9);
        Assert.That(response[..length], Is.EqualTo(answer));
    }

    private static byte[] AnswerTo(byte[] query)
    {
        byte[] answer = [.. query, 0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 0];
        answer[2] = 0x81;
        answer[3] = 0x80;
        answer[7] = 1; // ANCOUNT
        return answer;
    }

    private async Task<(byte[] Query, EndPoint From)> ReceiveQueryAsync()
    {
        byte[] buffer = new byte[512];
        using var timeout = new CancellationTokenSource(Guard);
        SocketReceiveFromResult result = await _upstream.ReceiveFromAsync(buffer, new IPEndPoint(IPAddress.Any, 0), timeout.Token);
        return (buffer[..result.ReceivedBytes], result.RemoteEndPoint);
    }
}
