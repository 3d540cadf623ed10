using System.Net;
using System.Net.Sockets;
using Egress.Policy;
using Egress.Relay;
using Egress.Tests.Relay;
using Egress.Tls;

namespace Egress.Tests.Tls;

/// <summary>The gate alone (chunked receives), its choice per decision, and on the socket relay between real sockets.</summary>
[TestFixture(true)]
[TestFixture(false)]
public sealed class ServerNameGateTests(bool splice)
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);
    private static readonly byte[] Allowed = ClientHelloVectors.Read("openssl-s_client-www.allowed.test");
    private static readonly byte[] Evil = ClientHelloVectors.Read("curl-evil.test");

    private RelayOptions Options { get; } = new() { UseSplice = splice };

    private static ServerNameGate Gate(TlsServerNameMode mode = TlsServerNameMode.Require) =>
        ServerNameGate.Create(mode, ["www.allowed.test"], _ => true);

    private static async Task<(FirstBytes First, int Receives)> InspectInChunksAsync(ServerNameGate gate, byte[] bytes, int cut)
    {
        int offset = 0;
        int receives = 0;
        FirstBytes first = await gate.InspectAsync(
            (buffer, _) =>
            {
                receives++;
                int end = offset < cut ? cut : bytes.Length;
                int count = Math.Min(buffer.Length, end - offset);
                bytes.AsSpan(offset, count).CopyTo(buffer.Span);
                offset += count;
                return ValueTask.FromResult(count);
            },
            CancellationToken.None);
        return (first, receives);
    }

    [Test]
    public async Task SplitAtEveryByteTheGateDecidesTheSame()
    {
        byte[] pq = ClientHelloVectors.Read("pq-x25519mlkem768-www.allowed.test");
        for (int cut = 1; cut < pq.Length; cut++)
        {
            var gate = Gate();
            var (first, receives) = await InspectInChunksAsync(gate, pq, cut);
            Assert.That((first.Allowed, receives, first.Received.ToArray()), Is.EqualTo((true, 2, pq)), $"split at {cut}");

            var refused = Gate();
            var (no, _) = await InspectInChunksAsync(refused, [.. Evil], Math.Min(cut, Evil.Length - 1));
            Assert.That((no.Allowed, refused.Refusal, refused.ServerName), Is.EqualTo((false, ServerNameRefusal.NotLearned, "evil.test")), $"split at {cut}");
        }
    }

    [Test]
    public async Task InReportModeARefusalIsRecordedAndTheBytesPass()
    {
        var gate = ServerNameGate.Create(TlsServerNameMode.Require, ["www.allowed.test"], _ => true, reportOnly: true);
        var (first, _) = await InspectInChunksAsync(gate, Evil, 10);

        Assert.That((first.Allowed, first.Received.ToArray(), gate.Refusal), Is.EqualTo((true, Evil, ServerNameRefusal.NotLearned)));
    }

    [Test]
    public async Task NotTlsPassesOnTheFirstReceive()
    {
        var gate = Gate();
        var (first, receives) = await InspectInChunksAsync(gate, "EHLO client\r\n"u8.ToArray(), 1);

        Assert.That((first.Allowed, receives, first.Received.ToArray()), Is.EqualTo((true, 1, "E"u8.ToArray())));
    }

    /// <summary>The enclave's check at accept (<see cref="ServerNameGate.TryDecide"/>) on every prefix of every corpus
    /// file: undecided while the relay's check would read on, then the relay's answer on the whole bytes, and the same for
    /// every longer prefix (what arrives later never changes it).</summary>
    [Test]
    public async Task AtAcceptEveryPrefixIsUndecidedOrDecidesAsTheRelaysCheckOnTheWhole(
        [Values(TlsServerNameMode.Require, TlsServerNameMode.IfPresent)] TlsServerNameMode mode)
    {
        static ServerNameGate Checking(TlsServerNameMode mode) =>
            ServerNameGate.Create(mode, ["www.allowed.test"], name => name.EndsWith("allowed.test", StringComparison.Ordinal));

        int decidedEarly = 0;
        foreach (string name in ClientHelloVectors.Names)
        {
            byte[] bytes = ClientHelloVectors.Read(name);
            var relays = Checking(mode);
            var (whole, _) = await InspectInChunksAsync(relays, bytes, bytes.Length);
            int? decidedAt = null;
            for (int length = 1; length <= bytes.Length; length++)
            {
                var atAccept = Checking(mode);
                bool? decided = atAccept.TryDecide(bytes.AsSpan(0, length));
                if (decided is null)
                {
                    Assert.That(decidedAt, Is.Null, $"{name}: undecided at {length} bytes after deciding on fewer");
                    Assert.That((atAccept.Refusal, atAccept.ServerName), Is.EqualTo((ServerNameRefusal.None, (string?)null)), $"{name}: nothing recorded at {length}");
                    continue;
                }

                decidedAt ??= length;
                Assert.That((decided, atAccept.Refusal, atAccept.ServerName), Is.EqualTo((whole.Allowed, relays.Refusal, relays.ServerName)), $"{name} at {length} bytes");
            }

            if (decidedAt is null)
            {
                Assert.That(relays.Refusal, Is.EqualTo(ServerNameRefusal.Truncated), $"{name}: never decided at accept, so the relay's check saw its end mid-ClientHello");
            }
            else
            {
                decidedEarly++;
            }
        }

        Assert.That(decidedEarly, Is.GreaterThan(10), "most of the corpus is decidable at accept");
    }

    [Test]
    public async Task AClientThatClosesMidClientHelloIsRefusedAndOneThatSentNothingIsNot()
    {
        var truncated = Gate();
        var (cut, _) = await InspectInChunksAsync(truncated, Allowed[..100], 100);
        var empty = Gate();
        var (nothing, _) = await InspectInChunksAsync(empty, [], 0);

        Assert.Multiple(() =>
        {
            Assert.That((cut.Allowed, truncated.Refusal), Is.EqualTo((false, ServerNameRefusal.Truncated)));
            Assert.That((nothing.Allowed, nothing.Received.Length, empty.Refusal), Is.EqualTo((true, 0, ServerNameRefusal.None)));
        });
    }

    /// <summary>A trial (5 December 2026): a client that sent only <c>16 03 01 02 00</c> held its connection, and the
    /// destination connection the parent had opened, for 102 s until the server gave up (a single-threaded server's
    /// other clients waited meanwhile). Once a ClientHello has begun, the rest must come within 10 s.</summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task AClientHelloThatStallsAfterItsFirstBytesIsRefusedAfterTenSeconds(bool restComes)
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var gate = ServerNameGate.Create(TlsServerNameMode.Require, ["www.allowed.test"], _ => true, time: time);
        var rest = new TaskCompletionSource();
        int receives = 0;
        var inspecting = gate.InspectAsync(
            async (buffer, token) =>
            {
                if (receives++ == 0)
                {
                    Allowed.AsSpan(0, 5).CopyTo(buffer.Span); // the record header alone
                    return 5;
                }

                await rest.Task.WaitAsync(token);
                Allowed.AsSpan(5).CopyTo(buffer.Span);
                return Allowed.Length - 5;
            },
            CancellationToken.None).AsTask();

        time.Advance(ServerNameGate.ClientHelloTimeout - TimeSpan.FromMilliseconds(1));
        Assert.That(inspecting.IsCompleted, Is.False, "1 ms before the deadline");
        if (restComes)
        {
            rest.SetResult();
            time.Advance(TimeSpan.FromSeconds(60));
            FirstBytes whole = await inspecting.WaitAsync(HangGuard);
            Assert.That((whole.Allowed, whole.Received.ToArray(), gate.Refusal), Is.EqualTo((true, Allowed, ServerNameRefusal.None)));
            return;
        }

        time.Advance(TimeSpan.FromMilliseconds(1));
        FirstBytes first = await inspecting.WaitAsync(HangGuard);
        Assert.That((first.Allowed, gate.Refusal), Is.EqualTo((false, ServerNameRefusal.TimedOut)));
        Assert.That(gate.RefusalText, Is.EqualTo("the client sent the start of a ClientHello and not the rest within 10 s"));
    }

    [Test]
    public async Task AClientThatSendsNothingIsNotTimedOutByTheGate()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var gate = ServerNameGate.Create(TlsServerNameMode.Require, ["www.allowed.test"], _ => true, time: time);
        using var stop = new CancellationTokenSource();
        var inspecting = gate.InspectAsync(async (_, token) => { await Task.Delay(Timeout.Infinite, token); return 0; }, stop.Token).AsTask();

        time.Advance(TimeSpan.FromMinutes(10));
        Assert.That(inspecting.IsCompleted, Is.False, "a server-first protocol's client may wait for the server: the relay's idle timeout bounds it");
        await stop.CancelAsync();
        Assert.That(async () => await inspecting.WaitAsync(HangGuard), Throws.InstanceOf<OperationCanceledException>());
    }

    [Test]
    public void OnlyConnectionsThroughLearnedAddressesAreChecked()
    {
        var cache = new AllowlistCache(new AllowlistCacheOptions());
        var policy = EgressPolicy.Create(true, ["www.allowed.test", "203.0.113.9"], cache);
        var off = EgressPolicy.Create(true, ["www.allowed.test"], cache, TlsServerNameMode.Off);
        var learned = IPAddress.Parse("198.51.100.7");
        Assert.That(policy.Learn("www.allowed.test", learned, TimeSpan.FromMinutes(5)).Outcome, Is.EqualTo(LearnOutcome.Learned));

        ServerNameGate? gate = ServerNameGate.For(policy, new IPEndPoint(learned, 443), policy.CheckAddress(learned));

        Assert.Multiple(() =>
        {
            Assert.That(policy.TlsServerName, Is.EqualTo(TlsServerNameMode.Require), "the default");
            Assert.That(gate, Is.Not.Null);
            Assert.That(gate!.LearnedNames, Is.EqualTo(new[] { "www.allowed.test" }));
            Assert.That(ServerNameGate.For(policy, new IPEndPoint(IPAddress.Parse("203.0.113.9"), 443), policy.CheckAddress(IPAddress.Parse("203.0.113.9"))), Is.Null, "an address entry");
            Assert.That(ServerNameGate.For(off, new IPEndPoint(learned, 443), off.CheckAddress(learned)), Is.Null, "\"off\"");
        });
    }

    /// <summary>From a new user's trial: two names on one address, the port allowed through one of them only; a
    /// ClientHello naming the other on that port was let through (the name check ignored the port).</summary>
    [Test]
    public async Task TheServerNameMustBeAllowedOnTheDestinationsPort()
    {
        var cache = new AllowlistCache(new AllowlistCacheOptions());
        var policy = EgressPolicy.Create(true, ["www.allowed.test:443,9000", "other.allowed.test:443"], cache);
        var shared = IPAddress.Parse("198.51.100.8");
        policy.Learn("www.allowed.test", shared, TimeSpan.FromMinutes(5));
        policy.Learn("other.allowed.test", shared, TimeSpan.FromMinutes(5));
        byte[] other = ClientHelloVectors.WithExtensions((0, ClientHelloVectors.ServerName("other.allowed.test"u8.ToArray())));

        var on9000 = ServerNameGate.For(policy, new IPEndPoint(shared, 9000), policy.CheckConnection(shared, 9000, out var hold9000))!;
        var on443 = ServerNameGate.For(policy, new IPEndPoint(shared, 443), policy.CheckConnection(shared, 443, out var hold443))!;
        hold9000?.Dispose();
        hold443?.Dispose();
        var (refused, _) = await InspectInChunksAsync(on9000, other, other.Length);
        var (allowed, _) = await InspectInChunksAsync(on443, other, other.Length);

        Assert.Multiple(() =>
        {
            Assert.That((refused.Allowed, on9000.Refusal), Is.EqualTo((false, ServerNameRefusal.NotAllowed)), "other.allowed.test is not allowed on 9000");
            Assert.That(allowed.Allowed, Is.True, "other.allowed.test on 443");
        });
    }

    [Test]
    public async Task OnTheRelayARefusedClientHelloNeverReachesTheServer()
    {
        using var pair = await RelayedPair.ConnectAsync();
        Task<RelayResult> relay = SocketRelay.RunAsync(pair.RelayA, pair.RelayB, default, default, Options, Gate(), CancellationToken.None);

        await pair.Client.SendAsync(Evil);
        byte[] atServer = await ReadUntilClosedAsync(pair.Server);
        RelayResult result = await relay.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(atServer, Is.Empty);
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.Refused));
            Assert.That(result.BytesAToB, Is.Zero);
        });
    }

    [Test]
    public async Task OnTheRelayAnAllowedClientHelloSplitInTwoArrivesWhole()
    {
        using var pair = await RelayedPair.ConnectAsync();
        Task<RelayResult> relay = SocketRelay.RunAsync(pair.RelayA, pair.RelayB, default, default, Options, Gate(), CancellationToken.None);

        await pair.Client.SendAsync(Allowed.AsMemory(0, 100));
        await Task.Delay(50);
        await pair.Client.SendAsync(Allowed.AsMemory(100));
        await pair.Client.SendAsync("after"u8.ToArray());
        pair.Client.Shutdown(SocketShutdown.Send);
        byte[] atServer = await SocketIo.ReadToEndAsync(pair.Server).WaitAsync(HangGuard);
        pair.Server.Shutdown(SocketShutdown.Send);
        RelayResult result = await relay.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(atServer, Is.EqualTo(Allowed.Concat("after"u8.ToArray()).ToArray()));
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
            Assert.That(result.BytesAToB, Is.EqualTo(Allowed.Length + 5));
        });
    }

    [Test]
    public async Task AServerThatSpeaksFirstIsNotHeldUp()
    {
        using var pair = await RelayedPair.ConnectAsync();
        Task<RelayResult> relay = SocketRelay.RunAsync(pair.RelayA, pair.RelayB, default, default, Options, Gate(), CancellationToken.None);

        await pair.Server.SendAsync("220 smtp.allowed.test ESMTP\r\n"u8.ToArray());
        byte[] banner = new byte[64];
        int got = await pair.Client.ReceiveAsync(banner.AsMemory()).AsTask().WaitAsync(HangGuard);
        await pair.Client.SendAsync("EHLO enclave\r\n"u8.ToArray());
        byte[] ehlo = new byte[64];
        int heard = await pair.Server.ReceiveAsync(ehlo.AsMemory()).AsTask().WaitAsync(HangGuard);
        pair.Client.Shutdown(SocketShutdown.Send);
        pair.Server.Shutdown(SocketShutdown.Send);
        await relay.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(System.Text.Encoding.ASCII.GetString(banner, 0, got), Is.EqualTo("220 smtp.allowed.test ESMTP\r\n"));
            Assert.That(System.Text.Encoding.ASCII.GetString(ehlo, 0, heard), Is.EqualTo("EHLO enclave\r\n"));
        });
    }

    private static async Task<byte[]> ReadUntilClosedAsync(Socket socket)
    {
        try
        {
            return await SocketIo.ReadToEndAsync(socket).WaitAsync(HangGuard);
        }
        catch (SocketException)
        {
            return []; // reset: nothing arrived before it
        }
    }

    /// <summary>client ⇄ (A) relay (B) ⇄ server over two TCP socket pairs.</summary>
    private sealed class RelayedPair : IDisposable
    {
        private readonly SocketPair _front;
        private readonly SocketPair _back;

        private RelayedPair(SocketPair front, SocketPair back)
        {
            _front = front;
            _back = back;
        }

        public Socket Client => _front.Left;

        public Socket RelayA => _front.Right;

        public Socket RelayB => _back.Left;

        public Socket Server => _back.Right;

        public static async Task<RelayedPair> ConnectAsync() =>
            new(await SocketPair.ConnectAsync(SocketTransport.Tcp), await SocketPair.ConnectAsync(SocketTransport.Tcp));

        public void Dispose()
        {
            _front.Dispose();
            _back.Dispose();
        }
    }
}
