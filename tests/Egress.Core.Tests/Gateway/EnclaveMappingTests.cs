using Egress.Configuration;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Egress.Diagnostics;
using Egress.Dns;
using Egress.Gateway;
using Egress.Policy;
using Egress.Tests.Diagnostics;
using Egress.Tunnel;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace Egress.Tests.Gateway;

/// <summary>
/// Several enclaves on one parent (<c>[[host.enclaves]]</c>): the map from a peer's CID to its entry, and a real
/// <see cref="TunnelGateway"/> on a Unix socket whose clients stand in for enclaves by the path they bind
/// (<c>cid-16.sock</c>), through the gateway's peer-CID seam: each is decided by its own policy, an unmapped CID is
/// refused with the reason, and metrics carry the entry's CID.
/// </summary>
public sealed partial class EnclaveMappingTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);

    private string _directory = null!;
    private TunnelEndpoint _endpoint = null!;
    private TelemetryProbe _probe = null!;
    private TunnelGateway? _gateway;
    private int _maxStreams;

    [SetUp]
    public void CreateDirectory()
    {
        _directory = Directory.CreateTempSubdirectory("egress-cid-").FullName;
        _endpoint = TunnelEndpoint.Parse($"unix:{_directory}/tunnel.sock");
        _probe = new TelemetryProbe(TunnelSide.Host);
        _maxStreams = 0;
    }

    [TearDown]
    public async Task StopGateway()
    {
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }

        _probe.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Test]
    public void AMappedCidGetsItsEntryAndAnyTheRest()
    {
        var map = new EnclaveMap<string>([(16u, "a"), (null, "any")]);

        Assert.Multiple(() =>
        {
            Assert.That(map.TryResolve(16, out string? sixteen, out _) ? sixteen : null, Is.EqualTo("a"));
            Assert.That(map.TryResolve(17, out string? other, out _) ? other : null, Is.EqualTo("any"));
            Assert.That(map.TryResolve(null, out string? unix, out _) ? unix : null, Is.EqualTo("any"), "a unix: or tcp:// stream has no CID");
        });
    }

    [Test]
    public void AnUnmappedCidIsRefusedWithTheReasonWhenThereIsNoAnyEntry()
    {
        var map = new EnclaveMap<string>([(18u, "b"), (16u, "a")]);

        bool served = map.TryResolve(17, out string? value, out string? refusal);
        bool servedWithoutCid = map.TryResolve(null, out _, out string? noCid);

        Assert.Multiple(() =>
        {
            Assert.That((served, value), Is.EqualTo((false, (string?)null)));
            Assert.That(refusal, Is.EqualTo("enclave CID 17 is not in [[host.enclaves]] (mapped: 16, 18; no cid = \"any\")"));
            Assert.That(servedWithoutCid, Is.False);
            Assert.That(noCid, Is.EqualTo("this tunnel endpoint gives no peer CID and [[host.enclaves]] has no cid = \"any\" entry (mapped: 16, 18)"));
        });
    }

    [Test]
    public void WithoutEntriesOneValueServesEveryCid()
    {
        var map = EnclaveMap<string>.Single("main");

        Assert.Multiple(() =>
        {
            Assert.That(map.TryResolve(99, out string? value, out _) ? value : null, Is.EqualTo("main"));
            Assert.That(map.IsMapped, Is.False);
        });
    }

    [Test]
    public void ACidMappedTwiceIsRejected() =>
        Assert.Throws<ArgumentException>(() => _ = new EnclaveMap<string>([(16u, "a"), (16u, "b")]));

    [Test]
    public async Task EachEnclaveIsDecidedByItsOwnPolicy()
    {
        using var forSixteen = new EchoServer(IPAddress.Loopback);
        using var forSeventeen = new EchoServer(IPAddress.Loopback);
        using var connections = new MetricCollector<long>(_probe.Meters, EgressMetrics.MeterName, "egress.connections");
        StartGateway(
            (16, [$"127.0.0.1:{forSixteen.EndPoint.Port}"]),
            (17, [$"127.0.0.1:{forSeventeen.EndPoint.Port}"]));

        TunnelResponse sixteenOwn = await RequestAsync(16, forSixteen.EndPoint);
        TunnelResponse sixteenOther = await RequestAsync(16, forSeventeen.EndPoint);
        TunnelResponse seventeenOwn = await RequestAsync(17, forSeventeen.EndPoint);

        Assert.Multiple(() =>
        {
            Assert.That(sixteenOwn.Status, Is.EqualTo(TunnelStatus.Ok), sixteenOwn.Detail);
            Assert.That(sixteenOther.Status, Is.EqualTo(TunnelStatus.DeniedByPolicy), sixteenOther.Detail);
            Assert.That(seventeenOwn.Status, Is.EqualTo(TunnelStatus.Ok), seventeenOwn.Detail);
        });
        await _probe.WaitForEventAsync(210);

        // An allowed connection is counted after its Ok went out: the last one's count may come after the first close.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (connections.GetMeasurementSnapshot().Count < 3 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(5);
        }

        Assert.That(
            connections.GetMeasurementSnapshot().Select(m => ((string?)m.Tags["egress.enclave"], (string?)m.Tags["egress.outcome"])).Order(),
            Is.EqualTo(new[] { ("16", "allowed"), ("16", "denied"), ("17", "allowed") }));
    }

    [Test]
    public async Task AnUnmappedCidIsAnsweredFailureWithTheReasonAndCounted()
    {
        using var echo = new EchoServer(IPAddress.Loopback);
        using var errors = new MetricCollector<long>(_probe.Meters, EgressMetrics.MeterName, "egress.tunnel.errors");
        StartGateway((16, ["127.0.0.1"]));

        TunnelResponse unmapped = await RequestAsync(17, echo.EndPoint);
        TunnelResponse noCid = await RequestAsync(null, echo.EndPoint);

        Assert.Multiple(() =>
        {
            Assert.That(unmapped, Is.EqualTo(new TunnelResponse(TunnelStatus.Failure, "parent: enclave CID 17 is not in [[host.enclaves]] (mapped: 16; no cid = \"any\")")));
            Assert.That(noCid.Status, Is.EqualTo(TunnelStatus.Failure));
            Assert.That(noCid.Detail, Does.Contain("gives no peer CID"));
            Assert.That(_probe.Logs.Lines, Has.Some.EqualTo($"Warning: rejected TcpConnect stream to {echo.EndPoint}: enclave CID 17 is not in [[host.enclaves]] (mapped: 16; no cid = \"any\")"));
            Assert.That(_probe.Logs.Values(217, "Reason").Count(reason => reason!.Contains("gives no peer CID", StringComparison.Ordinal)), Is.EqualTo(1),
                "each refusal of a peer gets its line: a configuration error is never held back by a rate limit");
            Assert.That(errors.GetMeasurementSnapshot().Select(m => (string?)m.Tags["egress.error"]), Is.EqualTo(new[] { "peer_refused", "peer_refused" }));
            Assert.That(echo.Served.IsCompleted, Is.False, "nothing was dialled for a refused enclave");
        });
    }

    [Test]
    public async Task TheAnyEntryServesUnmappedCidsAndStreamsWithoutOne()
    {
        using var echo = new EchoServer(IPAddress.Loopback);
        using var other = new EchoServer(IPAddress.Loopback);
        StartGateway((16, [$"127.0.0.1:{echo.EndPoint.Port}"]), (null, [$"127.0.0.1:{other.EndPoint.Port}"]));

        TunnelResponse unmapped = await RequestAsync(99, other.EndPoint);
        TunnelResponse unmappedToSixteens = await RequestAsync(99, echo.EndPoint);

        Assert.Multiple(() =>
        {
            Assert.That(unmapped.Status, Is.EqualTo(TunnelStatus.Ok), unmapped.Detail);
            Assert.That(unmappedToSixteens.Status, Is.EqualTo(TunnelStatus.DeniedByPolicy), unmappedToSixteens.Detail);
            Assert.That(_probe.Logs.Lines, Has.Some.StartsWith("Information: enclave any CID: 127.0.0.1:"));
        });
    }

    /// <summary>Code in one enclave that holds streams open up to <c>host.max_streams</c> must not get another enclave's
    /// streams refused at the limit: with several entries each CID holds at most three quarters of it.</summary>
    [Test]
    public async Task NoEnclaveHoldsMoreThanThreeQuartersOfTheStreamsWhileSeveralAreServed()
    {
        using var closing = ClosingServer(out IPEndPoint destination);
        using var errors = new MetricCollector<long>(_probe.Meters, EgressMetrics.MeterName, "egress.tunnel.errors");
        _maxStreams = 4;
        StartGateway((16, ["127.0.0.1"]), (17, ["127.0.0.1"]));
        Assert.That(_gateway!.StreamShare!.Share, Is.EqualTo(3));
        var held = new List<Socket>();
        try
        {
            for (int i = 0; i < 3; i++)
            {
                var (stream, ok) = await OpenAsync(16, destination, $"held{i}-");
                held.Add(stream);
                Assert.That(ok.Status, Is.EqualTo(TunnelStatus.Ok), ok.Detail);
            }

            TunnelResponse beyond = await RequestAsync(16, destination);

            // The refused stream holds its slot of host.max_streams (4) until its handler ends, just after the answer
            // (a full run under load saw CID 17 refused at the global limit here): waited for.
            var released = DateTime.UtcNow + HangGuard;
            while (_gateway.StreamsAdmitted > 3 && DateTime.UtcNow < released)
            {
                await Task.Delay(5);
            }

            TunnelResponse other = await RequestAsync(17, destination);

            Assert.Multiple(() =>
            {
                Assert.That(beyond, Is.EqualTo(new TunnelResponse(TunnelStatus.Failure,
                    "parent: stream limit reached for enclave CID 16: it holds 3 streams, three quarters of (host.max_streams = 4), its share while [[host.enclaves]] serves several enclaves")));
                Assert.That(other.Status, Is.EqualTo(TunnelStatus.Ok), "the other enclave has its quarter: " + other.Detail);
                Assert.That(errors.GetMeasurementSnapshot().Select(m => ((string?)m.Tags["egress.error"], (string?)m.Tags["egress.enclave"])),
                    Is.EqualTo(new[] { ((string?)"stream_limit", (string?)"16") }));
            });
            await _probe.WaitForEventAsync(211);
        }
        finally
        {
            held.ForEach(stream => stream.Dispose());
        }

        // Closed, the held streams give their share back: the enclave is served again, and no CID is left counted.
        var deadline = DateTime.UtcNow + HangGuard;
        while (_gateway.StreamShare.Tracked > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(5);
        }

        Assert.That(_gateway.StreamShare.Tracked, Is.Zero);

        while (_gateway.StreamsAdmitted > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(5); // their slots of host.max_streams too
        }

        TunnelResponse again = await RequestAsync(16, destination);
        Assert.That(again.Status, Is.EqualTo(TunnelStatus.Ok), again.Detail);
    }

    /// <summary>A review's finding: a refusal beyond the share waits for its stream's request while it holds a slot of
    /// <c>host.max_streams</c>, so bare streams beyond the share (sending nothing) filled the others' quarter. At most 16
    /// are answered at once; the rest are reset at once.</summary>
    [Test]
    public async Task BareStreamsBeyondTheShareCannotFillTheOtherEnclavesQuarter()
    {
        using var closing = ClosingServer(out IPEndPoint destination);
        _maxStreams = 80; // share 60, a quarter of 20 left to the others; 8 of the 80, and 7 of each share, kept for DNS
        StartGateway((16, ["127.0.0.1"]), (17, ["127.0.0.1"]));
        var sockets = new List<Socket>();
        try
        {
            int share = _gateway!.StreamShare!.Share, kept = DnsStreamLimits.Reserved(share);
            Assert.That((share, kept), Is.EqualTo((60, 7)));
            for (int i = 0; i < share - kept; i++)
            {
                var (stream, ok) = await OpenAsync(16, destination, $"held{i}-");
                sockets.Add(stream);
                Assert.That(ok.Status, Is.EqualTo(TunnelStatus.Ok), ok.Detail);
            }

            // The last of its share are kept for its DNS: a connection is refused, a DNS stream served.
            var (refusedStream, refusedTcp) = await OpenAsync(16, destination, "kept-");
            refusedStream.Dispose();
            Assert.That(refusedTcp, Is.EqualTo(new TunnelResponse(TunnelStatus.Failure,
                "parent: stream limit reached for relayed connections of enclave CID 16: it holds 54 streams of its share of 60 (host.max_streams = 80), and the last 7 of it are kept for its DNS and denial reports")));
            var (dns, dnsOk) = await OpenAsync(16, TunnelRequest.ForDns(), "dns-");
            sockets.Add(dns);
            Assert.That(dnsOk.Status, Is.EqualTo(TunnelStatus.Ok), "a DNS stream of an enclave whose connections hold their part of its share: " + dnsOk.Detail);

            for (int i = 0; i < kept - 1 + 20; i++) // the rest of its share, then 20 beyond
            {
                var bare = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                sockets.Add(bare);
                bare.Bind(new UnixDomainSocketEndPoint(Path.Combine(_directory, $"bare{i}-cid-16.sock")));
                await bare.ConnectAsync(_endpoint.EndPoint); // and nothing sent: its refusal waits for a request
            }

            await _probe.WaitForEventAsync(261); // the 17th and later were reset unanswered
            TunnelResponse other = await RequestAsync(17, destination);

            Assert.That(other.Status, Is.EqualTo(TunnelStatus.Ok), "the other enclave still has room: " + other.Detail);
            Assert.That(_probe.Logs.Lines, Has.Some.Contains("stream reset unanswered: stream limit reached for enclave CID 16"));
        }
        finally
        {
            sockets.ForEach(socket => socket.Dispose());
        }
    }

    [Test]
    public async Task WithOneEntryOrNoneAnEnclaveMayHoldEveryStream()
    {
        using var echo = new EchoServer(IPAddress.Loopback);
        _maxStreams = 2;
        StartGateway((16, ["127.0.0.1"]));
        Assert.That(_gateway!.StreamShare, Is.Null);
        var (first, ok) = await OpenAsync(16, echo.EndPoint, "held-");
        using (first)
        {
            TunnelResponse second = await RequestAsync(16, echo.EndPoint);
            Assert.That((ok.Status, second.Status), Is.EqualTo((TunnelStatus.Ok, TunnelStatus.Ok)), second.Detail);
        }
    }

    /// <summary>A destination that closes every connection it accepts at once: a stream to it then lives until its
    /// enclave closes it (the parent's relay waits for the enclave's end after the destination's).</summary>
    private static Socket ClosingServer(out IPEndPoint endPoint)
    {
        var closing = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        closing.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        closing.Listen(128);
        endPoint = (IPEndPoint)closing.LocalEndPoint!;
        _ = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    (await closing.AcceptAsync()).Dispose();
                }
            }
            catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
            {
                // the test ended
            }
        });
        return closing;
    }

    [GeneratedRegex(@"cid-(?<cid>[0-9]+)\.sock$")]
    private static partial Regex CidPath();

    /// <summary>The test seam: a Unix client that bound <c>cid-N.sock</c> is enclave CID N; one that bound nothing has none.</summary>
    private static uint? PeerCidOfPath(Socket stream) =>
        stream.RemoteEndPoint is UnixDomainSocketEndPoint peer && CidPath().Match(peer.ToString()) is { Success: true } match
            ? uint.Parse(match.Groups["cid"].Value, System.Globalization.CultureInfo.InvariantCulture)
            : null;

    private void StartGateway(params (uint? Cid, string[] Destinations)[] enclaves)
    {
        var main = EgressPolicy.Create(true, [], new AllowlistCache(new AllowlistCacheOptions()));
        var options = new TunnelGatewayOptions
        {
            Listen = _endpoint,
            HeaderTimeout = TimeSpan.FromSeconds(5),
            Metrics = _probe.Metrics,
            PeerCid = PeerCidOfPath,
            MaxStreams = _maxStreams,
            Enclaves = [.. enclaves.Select(enclave => new GatewayEnclave(
                enclave.Cid,
                EgressPolicy.Create(true, enclave.Destinations, new AllowlistCache(new AllowlistCacheOptions())),
                string.Join(", ", enclave.Destinations)))],
        };
        _gateway = new TunnelGateway(options, main, _probe.LoggerFactory);
        _gateway.Start();
    }

    private async Task<TunnelResponse> RequestAsync(uint? cid, IPEndPoint destination)
    {
        var (stream, response) = await OpenAsync(cid, destination, "");
        stream.Dispose();
        if (cid is { } bound)
        {
            File.Delete(Path.Combine(_directory, $"cid-{bound}.sock"));
        }

        return response;
    }

    /// <summary>A stream of enclave <paramref name="cid"/> (bound to <c>{prefix}cid-N.sock</c>: a different prefix
    /// per open stream of one CID), its request sent and the parent's answer read; the caller closes it.</summary>
    private async Task<(Socket Stream, TunnelResponse Response)> OpenAsync(uint? cid, IPEndPoint destination, string prefix) =>
        await OpenAsync(cid, TunnelRequest.ForTcp(destination), prefix);

    private async Task<(Socket Stream, TunnelResponse Response)> OpenAsync(uint? cid, TunnelRequest request, string prefix)
    {
        var stream = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            if (cid is { } number)
            {
                stream.Bind(new UnixDomainSocketEndPoint(Path.Combine(_directory, $"{prefix}cid-{number}.sock")));
            }

            await stream.ConnectAsync(_endpoint.EndPoint);
            await TunnelWire.SendAsync(stream, request);
            return (stream, await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard));
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }
}
