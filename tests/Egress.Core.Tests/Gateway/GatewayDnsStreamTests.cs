using System.Net;
using System.Net.Sockets;
using Egress.Dns;
using Egress.Dns.Upstream;
using Egress.Dns.Wire;
using Egress.Gateway;
using Egress.Policy;
using Egress.Tests.Dns;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;

namespace Egress.Tests.Gateway;

/// <summary>
/// The parent's side of DNS alone: a raw tunnel DNS stream to a <see cref="TunnelGateway"/> (as a compromised or
/// buggy enclave could send anything), answered from a fake upstream.
/// </summary>
public sealed class GatewayDnsStreamTests
{
    private FakeUpstreamDns _upstream = null!;
    private string _directory = null!;
    private TunnelGateway _gateway = null!;
    private EgressPolicy _policy = null!;
    private LogCapture _log = null!;
    private TunnelEndpoint _tunnel = null!;

    [SetUp]
    public void SetUp()
    {
        _upstream = new FakeUpstreamDns(TestZone.Answer);
        _directory = Directory.CreateTempSubdirectory("egress-gwdns-").FullName;
        _tunnel = TunnelEndpoint.Parse("unix:" + Path.Combine(_directory, "t.sock"));
        _policy = EgressPolicy.Create(true, DnsTunnelHarness.Destinations, new AllowlistCache());
        _log = new LogCapture();
        _gateway = new TunnelGateway(new TunnelGatewayOptions { Listen = _tunnel, DnsUpstreams = [_upstream.EndPoint] }, _policy, _log.Factory);
        _gateway.Start();
    }

    [TearDown]
    public async Task TearDown()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        _log.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Test]
    public async Task DnsStreamIsAcceptedAndPipelinedQueriesAreAnsweredByIdInAnyOrder()
    {
        using Socket stream = await OpenDnsStreamAsync();
        ushort[] ids = [10, 11, 12, 13];
        string[] names = ["slow.x.test", "a.x.test", "api.y.test", "n7.x.test"];
        for (int i = 0; i < ids.Length; i++)
        {
            await SendFrameAsync(stream, DnsQueryBytes.Build(ids[i], names[i]));
        }

        // slow.x.test is still waiting on its upstream while the others are answered.
        var answered = new Dictionary<ushort, byte[]>();
        for (int i = 0; i < 3; i++)
        {
            byte[] answer = await DnsTunnelHarness.ReadFrameAsync(stream);
            answered[DnsMessage.ReadId(answer)] = answer;
        }

        Assert.That(answered.Keys, Is.EquivalentTo(new ushort[] { 11, 12, 13 }));
        Assert.That(answered.Values.Select(DnsQueryBytes.Rcode), Is.All.EqualTo(0));
        Assert.That(_upstream.Queries.Select(q => q.Name), Is.EquivalentTo(names));
    }

    [Test]
    public async Task ParentDeniesADeniedNameItselfWithNxDomainWithoutAskingTheUpstream()
    {
        using Socket stream = await OpenDnsStreamAsync();
        byte[] query = DnsQueryBytes.Build(0x0BAD, "metadata.internal");
        await SendFrameAsync(stream, query);

        byte[] answer = await DnsTunnelHarness.ReadFrameAsync(stream);
        byte[] expected = new byte[DnsMessage.MaxErrorResponseLength];
        Assert.That(answer, Is.EqualTo(expected[..DnsMessage.WriteDenied(query, expected)]));
        Assert.That(_upstream.Queries, Is.Empty);
        Assert.That(_log.Values(254, "Name"), Is.EqualTo(new[] { "metadata.internal" }));
    }

    // Red-team trial (6 December): a denied-name query on each of 25 streams a second was a parent log line each.
    [Test]
    public async Task AFloodOfDeniedNamesIsTenLinesASecondAndTheRestCounted()
    {
        using Socket stream = await OpenDnsStreamAsync();
        for (ushort id = 1; id <= 30; id++)
        {
            await SendFrameAsync(stream, DnsQueryBytes.Build(id, $"n{id}.metadata.internal"));
        }

        for (int i = 0; i < 30; i++)
        {
            Assert.That(DnsQueryBytes.Rcode(await DnsTunnelHarness.ReadFrameAsync(stream)), Is.EqualTo(3), "every one answered NXDOMAIN");
        }

        Assert.That(_log.Values(254, "Name"), Has.Count.EqualTo(10), "the first ten in the second name theirs");
    }

    // Red-team trial (6 December): after "the peer took no answer" the parent kept such a stream, its descriptor and its
    // stream place, for the 30 s its close waits for a tail to be taken.
    [Test]
    public async Task AStreamWhosePeerDoesNotReadIsClosedAtOnce()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        string directory = Directory.CreateTempSubdirectory("egress-gwdns-").FullName;
        var tunnel = TunnelEndpoint.Parse("unix:" + Path.Combine(directory, "t.sock"));
        await using var gateway = new TunnelGateway(
            new TunnelGatewayOptions { Listen = tunnel, DnsUpstreams = [_upstream.EndPoint], Relay = new Egress.Relay.RelayOptions { TimeProvider = time } },
            _policy,
            _log.Factory);
        gateway.Start();
        try
        {
            using Socket stream = await tunnel.ConnectAsync(CancellationToken.None);
            await RequestDnsAsync(stream);
            // Denied names, answered NXDOMAIN by the parent itself (no upstream, no timer): enough answers to fill the
            // socket's buffers, so the parent's flush waits for a peer that takes nothing. Sent in the background: the
            // parent stops reading once its answers cannot be written.
            byte[] frames = [.. Enumerable.Range(1, 8000).SelectMany(id => Frame(DnsQueryBytes.Build((ushort)id, $"n{id}.metadata.internal")))];
            _ = stream.SendAsync(frames, SocketFlags.None).ContinueWith(static _ => { }, TaskScheduler.Default);
            await Task.Delay(1000);
            time.Advance(DnsFramedConnection.WriteTimeout + TimeSpan.FromSeconds(1));
            DateTime giveUp = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (!Egress.Sockets.SocketNative.PeerShutDown(stream.SafeHandle) && DateTime.UtcNow < giveUp)
            {
                await Task.Delay(20);
            }

            Assert.Multiple(() =>
            {
                Assert.That(Egress.Sockets.SocketNative.PeerShutDown(stream.SafeHandle), Is.True, "closed at once, not 30 s later");
                Assert.That(_log.Values(317, "Seconds"), Is.EqualTo(new[] { "10" }));
            });
        }
        finally
        {
            await gateway.DisposeAsync();
            Directory.Delete(directory, recursive: true);
        }
    }

    private static byte[] Frame(byte[] message) => [(byte)(message.Length >> 8), (byte)message.Length, .. message];

    /// <summary>Code in the enclave that speaks the tunnel protocol itself skips the enclave's forwarder: the parent
    /// forwards the question only too.</summary>
    [Test]
    public async Task TheParentForwardsAQueryFromTheTunnelAsItsQuestionOnly()
    {
        using Socket stream = await OpenDnsStreamAsync();
        byte[] query = [.. new DnsMessageBuilder().Header(0x0F0F, 0x0100, 1, 0, 1, 1).Question("a.x.test").A("data.x.test", "198.18.0.1")
            .Opt(4096, 0, [0xFD, 0xE9, 0x00, 0x04, 1, 2, 3, 4]).ToArray(), 9, 9, 9];
        await SendFrameAsync(stream, query);

        byte[] answer = await DnsTunnelHarness.ReadFrameAsync(stream);
        Assert.That((DnsMessage.ReadId(answer), DnsQueryBytes.Rcode(answer)), Is.EqualTo((0x0F0F, 0)));
        byte[] received = _upstream.QueryBytes.Single();
        DnsMessage.WriteId(received, 0x0F0F);
        Assert.That(received, Is.EqualTo(new DnsMessageBuilder().Header(0x0F0F, 0x0100, 1, 0, 0, 1).Question("a.x.test").Opt(4096, 0).ToArray()));
    }

    [Test]
    public async Task ParentLearnsAnsweredAddressesForItsConnectCheck()
    {
        var address = IPAddress.Parse("198.18.0.10");
        Assert.That(_policy.CheckAddress(address).IsAllowed, Is.False);
        using Socket stream = await OpenDnsStreamAsync();
        await SendFrameAsync(stream, DnsQueryBytes.Build(1, "A.X.test"));
        await DnsTunnelHarness.ReadFrameAsync(stream);

        PolicyDecision decision = _policy.CheckAddress(address);
        Assert.That((decision.Reason, decision.Subject), Is.EqualTo((DecisionReason.Learned, "a.x.test")));
    }

    [Test]
    public async Task MalformedFrameGetsFormErrAndAnEmptyFrameEndsTheStream()
    {
        using Socket stream = await OpenDnsStreamAsync();
        byte[] cut = DnsQueryBytes.Build(0x0C07, "a.x.test")[..16];
        await SendFrameAsync(stream, cut);
        Assert.That(await DnsTunnelHarness.ReadFrameAsync(stream), Is.EqualTo(new byte[] { 0x0C, 0x07, 0x81, 0x81, 0, 0, 0, 0, 0, 0, 0, 0 }));

        await stream.SendAsync(new byte[] { 0, 0 }, SocketFlags.None);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Assert.That(await stream.ReceiveAsync(new byte[16], SocketFlags.None, timeout.Token), Is.EqualTo(0));
    }

    /// <summary>A trial read egress-host's <c>info: dns stream closed</c> (no reason) each time the enclave closed an
    /// idle DNS stream (after 30 s without a query; it reopens on the next), and egress-enclave's <c>dns stream 0
    /// opened</c> at Information each time it reopened: 12 opens and 10 closes in a short session, read as errors. The
    /// ordinary cycle is logged at Debug on both hosts, the close with its reason.</summary>
    [Test]
    public async Task AnIdleDnsStreamTheEnclaveClosesAndReopensIsLoggedAtDebugOnBothHostsWithTheReason()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        using var enclaveLog = new LogCapture();
        var forwarder = new Egress.Dns.Forwarder.DnsForwarder(
            new Egress.Dns.Forwarder.DnsForwarderOptions
            {
                Listen = [new IPEndPoint(IPAddress.Loopback, 0)],
                Tunnel = _tunnel,
                StreamCount = 1,
                TimeProvider = time,
            },
            EgressPolicy.Create(true, DnsTunnelHarness.Destinations, new AllowlistCache()),
            enclaveLog.Factory);
        await using (forwarder)
        {
            forwarder.Start();
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            client.Connect(forwarder.LocalEndPoints[0]);
            await client.SendAsync(DnsQueryBytes.Build(0x0101, "a.x.test"), SocketFlags.None);
            Assert.That(DnsQueryBytes.Rcode(await DnsTunnelHarness.ReceiveAsync(client)), Is.Zero);

            time.Advance(DnsStreamLimits.EnclaveIdleTimeout + TimeSpan.FromSeconds(1)); // the enclave's sweep closes it
            var closed = await _log.WaitForEventAsync(253);
            var opened = await _log.WaitForEventAsync(252);
            var enclaveOpened = await enclaveLog.WaitForEventAsync(310);
            var enclaveClosed = await enclaveLog.WaitForEventAsync(322);
            Assert.Multiple(() =>
            {
                Assert.That((closed.Level, closed.Message), Is.EqualTo((LogLevel.Debug, "dns stream closed: closed by the enclave")));
                Assert.That(opened.Level, Is.EqualTo(LogLevel.Debug), "egress-host's open");
                Assert.That(enclaveOpened.Level, Is.EqualTo(LogLevel.Debug), "egress-enclave's open");
                Assert.That(enclaveClosed.Level, Is.EqualTo(LogLevel.Debug), "egress-enclave's idle close");
                Assert.That(_log.Records.Concat(enclaveLog.Records).Where(r => r.Level >= LogLevel.Information).Select(r => r.Message), Has.None.Contains("dns stream"));
            });
        }
    }

    /// <summary>A DNS stream that ends any other way is logged at Information with its reason.</summary>
    [Test]
    public async Task ADnsStreamCutShortInAFrameIsLoggedAtInformationWithTheReason()
    {
        using (Socket stream = await OpenDnsStreamAsync())
        {
            await stream.SendAsync(new byte[] { 0, 30, 1, 2 }, SocketFlags.None); // 2 bytes of a 30-byte frame
            stream.Shutdown(SocketShutdown.Send);
            var closed = await _log.WaitForEventAsync(253);
            Assert.That((closed.Level, closed.Message), Is.EqualTo((LogLevel.Information, "dns stream closed: the enclave closed it in the middle of a frame")));
        }
    }

    /// <summary>A reset (on a unix socket: closed with the parent's answer unread) is logged at Information with the error.</summary>
    [Test]
    public async Task AResetDnsStreamIsLoggedAtInformationWithTheError()
    {
        using (Socket stream = await OpenDnsStreamAsync())
        {
            await SendFrameAsync(stream, DnsQueryBytes.Build(1, "a.x.test"));
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while (stream.Available == 0)
            {
                await Task.Delay(10, timeout.Token);
            }
        }

        var closed = await _log.WaitForEventAsync(253);
        Assert.Multiple(() =>
        {
            Assert.That(closed.Level, Is.EqualTo(LogLevel.Information));
            Assert.That(closed.Message, Does.StartWith("dns stream closed: reset or failed (").And.Contains("reset"));
        });
    }

    /// <summary>A red-team trial: any process in the enclave can open DNS streams; one that held every place the parent
    /// allows took the DNS forwarder's as they closed when idle, and every application's query got SERVFAIL. At the
    /// limit a new stream now takes the place of another: first of one that has forwarded nothing.</summary>
    [Test]
    public async Task AtTheDnsStreamLimitANewStreamTakesThePlaceOfOneThatForwardedNothing()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        string directory = Directory.CreateTempSubdirectory("egress-gwdns-").FullName;
        var tunnel = TunnelEndpoint.Parse("unix:" + Path.Combine(directory, "t.sock"));
        const int MaxStreams = 200; // an eighth: 25 DNS streams
        await using var gateway = new TunnelGateway(
            new TunnelGatewayOptions { Listen = tunnel, DnsUpstreams = [_upstream.EndPoint], MaxStreams = MaxStreams, Relay = new Egress.Relay.RelayOptions { TimeProvider = time } },
            _policy,
            _log.Factory);
        gateway.Start();
        var held = new List<Socket>();
        try
        {
            for (int i = 0; i < DnsStreamLimits.MaxStreams(MaxStreams); i++)
            {
                Socket open = await tunnel.ConnectAsync(CancellationToken.None);
                held.Add(open);
                await RequestDnsAsync(open);
            }

            await SendFrameAsync(held[0], DnsQueryBytes.Build(1, "a.x.test")); // the first stream forwards a query
            await DnsTunnelHarness.ReadFrameAsync(held[0]);
            time.Advance(TimeSpan.FromSeconds(2));

            using Socket newcomer = await tunnel.ConnectAsync(CancellationToken.None);
            Assert.That((await RequestAsync(newcomer)).Status, Is.EqualTo(TunnelStatus.Ok));
            int read = await held[1].ReceiveAsync(new byte[16], SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10));
            await SendFrameAsync(held[0], DnsQueryBytes.Build(2, "a.x.test"));
            byte[] stillAnswered = await DnsTunnelHarness.ReadFrameAsync(held[0]);
            await SendFrameAsync(newcomer, DnsQueryBytes.Build(3, "a.x.test"));
            byte[] newcomerAnswered = await DnsTunnelHarness.ReadFrameAsync(newcomer);

            Assert.Multiple(() =>
            {
                Assert.That(read, Is.Zero, "the oldest stream that forwarded nothing (opened second) was closed");
                Assert.That((DnsMessage.ReadId(stillAnswered), DnsMessage.ReadId(newcomerAnswered)), Is.EqualTo(((ushort)2, (ushort)3)));
                Assert.That(_log.Lines, Has.Some.Contains("dns stream limit reached (25 DNS streams at once").And.Contains(
                    "closed a DNS stream so that a new one could open: one that had no query forwarded upstream yet (open 2 s)"));
            });
        }
        finally
        {
            held.ForEach(socket => socket.Dispose());
            await gateway.DisposeAsync();
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public async Task UpstreamClientWithNoUpstreamsFailsAndRestoresTheQueryId()
    {
        using var client = new DnsUpstreamClient([], TimeSpan.FromMilliseconds(200), TimeProvider.System);
        byte[] query = DnsQueryBytes.Build(0x7777, "a.x.test");

        Assert.That(await client.ResolveAsync(query, new byte[65536], CancellationToken.None), Is.EqualTo(-1));
        Assert.That(query, Is.EqualTo(DnsQueryBytes.Build(0x7777, "a.x.test")));
    }

    [Test]
    public async Task UpstreamClientUsesARandomIdUpstreamAndRestoresTheClients()
    {
        using var client = new DnsUpstreamClient([_upstream.EndPoint], TimeSpan.FromSeconds(2), TimeProvider.System);
        var upstreamIds = new HashSet<ushort>();
        for (int i = 0; i < 8; i++)
        {
            byte[] response = new byte[65536];
            int length = await client.ResolveAsync(DnsQueryBytes.Build(0x0101, "a.x.test"), response, CancellationToken.None);
            Assert.That(DnsMessage.ReadId(response), Is.EqualTo(0x0101));
            Assert.That(_upstream.Answers.TryDequeue(out byte[]? sent), Is.True);
            Assert.That(response[2..length], Is.EqualTo(sent![2..]));
            upstreamIds.Add(DnsMessage.ReadId(sent));
        }

        // Eight random 16-bit IDs are all 0x0101 with probability 2^-128.
        Assert.That(upstreamIds, Is.Not.EquivalentTo(new ushort[] { 0x0101 }));
    }

    private async Task<Socket> OpenDnsStreamAsync()
    {
        Socket socket = await _tunnel.ConnectAsync(CancellationToken.None);
        await RequestDnsAsync(socket);
        return socket;
    }

    /// <summary>Sends a DNS stream request and reads the parent's status (any).</summary>
    private static async Task<TunnelResponse> RequestAsync(Socket socket)
    {
        var (result, response, _) = await TunnelHandshake.RequestAsync(socket, TunnelRequest.ForDns(), CancellationToken.None);
        Assert.That(result, Is.EqualTo(TunnelReadResult.Complete));
        return response;
    }

    private static async Task RequestDnsAsync(Socket socket)
    {
        byte[] request = new byte[TunnelCodec.MaxRequestLength];
        int length = TunnelCodec.WriteRequest(TunnelRequest.ForDns(), request);
        await socket.SendAsync(request.AsMemory(0, length), SocketFlags.None);
        byte[] response = new byte[3];
        int read = 0;
        while (read < 3)
        {
            read += await socket.ReceiveAsync(response.AsMemory(read), SocketFlags.None);
        }

        Assert.That(response, Is.EqualTo(new byte[] { TunnelCodec.Version, (byte)TunnelStatus.Ok, 0 }));
    }

    private static async Task SendFrameAsync(Socket socket, byte[] message)
    {
        byte[] frame = new byte[message.Length + 2];
        DnsTcpFraming.WriteMessage(message, frame);
        await socket.SendAsync(frame, SocketFlags.None);
    }
}
