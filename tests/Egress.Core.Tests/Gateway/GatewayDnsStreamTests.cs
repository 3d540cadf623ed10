using System.Net;
using System.Net.Sockets;
using Egress.Dns;
using Egress.Dns.Upstream;
using Egress.Dns.Wire;
using Egress.Gateway;
using Egress.Policy;
using Egress.Tests.Dns;
using Egress.Tunnel;

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
