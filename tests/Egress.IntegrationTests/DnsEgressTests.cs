using System.Globalization;
using System.Net;
using DnsClient;
using DnsClient.Protocol;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// Allowlisted DNS over the tunnel, end to end: unmodified clients in the enclave namespace (dig, curl, DnsClient)
/// resolve through egress-enclave's forwarder on 127.0.0.1:53 (the namespace's resolv.conf), which refuses names
/// outside the allowlist and forwards the others over the tunnel to egress-host, whose upstream is dnsmasq in the
/// world. The allowlist holds names only, so every connection here is allowed by what DNS taught both sides.
/// TTL floor and grace are 1 s each so that expiry can be observed; every other record has a 300 s TTL.
/// </summary>
[TestFixture]
public sealed class DnsEgressTests : EgressFixture
{
    private const string Www = "www.allowed.test";
    private const string Later = "later.allowed.test";
    private const string Cdn = "cdn.allowed.test";
    private const string Edge = "edge.outside.test";
    private const string Meta = "meta.allowed.test";
    private const string Mixed = "mixed.allowed.test";
    private const string Big = "big.allowed.test";
    private const string V6 = "v6.allowed.test";
    private const string ShortLived = "ttl.allowed.test";
    private const string LongLived = "long.allowed.test";
    private const string DeepWild = "a.b.wild.test";
    private const string WildApex = "wild.test";
    private const string Denied = "denied.test";
    private const int BigRecordCount = 40;

    private static readonly string[] Destinations = [Www, Later, Cdn, Meta, Mixed, Big, V6, ShortLived, LongLived, "*.wild.test"];

    private static readonly IPAddress[] BigAddresses =
        [.. Enumerable.Range(1, BigRecordCount).Select(i => IPAddress.Parse(string.Create(CultureInfo.InvariantCulture, $"198.18.3.{i}")))];

    private DnsmasqServer? dnsmasq;

    private DnsmasqServer Dnsmasq => dnsmasq ?? throw new InvalidOperationException("no dnsmasq");

    private string? muslBinary;

    internal override string ConfigToml => EnclaveConfig.Render(Destinations, ttlFloorSeconds: 1, graceSeconds: 1);

    internal override async Task PrepareAsync(Topology topology)
    {
        dnsmasq = await topology.StartDnsmasqAsync(
        [
            DnsmasqRecord.Host(Www, WorldAddresses.Allowed),
            DnsmasqRecord.Host(Later, WorldAddresses.Unlisted),
            DnsmasqRecord.Host(Edge, WorldAddresses.ViaCname),
            DnsmasqRecord.Cname(Cdn, Edge),
            DnsmasqRecord.Host(Meta, WorldAddresses.Metadata),
            DnsmasqRecord.Host(Mixed, IPAddress.Parse("fd00::5")),
            DnsmasqRecord.Host(Mixed, WorldAddresses.Allowed),
            DnsmasqRecord.Host(V6, WorldAddresses.AllowedV6),
            DnsmasqRecord.Host(ShortLived, WorldAddresses.ShortTtl, ttlSeconds: 1),
            DnsmasqRecord.Host(LongLived, WorldAddresses.Allowed, ttlSeconds: 2_592_000),
            DnsmasqRecord.Host(DeepWild, WorldAddresses.ViaWildcard),
            DnsmasqRecord.Host(WildApex, WorldAddresses.ViaWildcard),
            DnsmasqRecord.Host(Denied, WorldAddresses.Denied),
            .. BigAddresses.Select(address => DnsmasqRecord.Host(Big, address)),
        ]);
        topology.SetEnclaveNameserver(IPAddress.Loopback);
    }

    [TestCase("+notcp", "UDP")]
    [TestCase("+tcp", "TCP")]
    public async Task DigGetsTheUpstreamsAnswerForAnAllowedNameUnchanged(string transportOption, string transport)
    {
        var dig = await Clients.DigAsync(Topology.Enclave, transportOption, Www);
        Assert.Multiple(() =>
        {
            Assert.That(dig.Status, Is.EqualTo("NOERROR"), dig.ToString);
            Assert.That(dig.Transport, Is.EqualTo(transport), dig.ToString);
            Assert.That(dig.Answers, Is.EqualTo(new[] { new DigRecord($"{Www}.", DnsmasqServer.DefaultTtlSeconds, "A", "198.18.0.10") }), dig.ToString);
            Assert.That(dig.Flags, Does.Contain("aa"), "dnsmasq's authoritative flag must come through unchanged");
        });
    }

    [TestCase("+notcp")]
    [TestCase("+tcp")]
    public async Task ADeniedNameGetsNxDomainWithAnExtendedErrorWithoutReachingTheUpstream(string transportOption)
    {
        var dig = await Clients.DigAsync(Topology.Enclave, transportOption, Denied);
        var plain = await Clients.DigAsync(Topology.Enclave, transportOption, "+noedns", Denied);
        var logLine = await LogLineAsync(Deployment.Enclave, $"denied DNS {Denied} A: name not in allowlist; answered NXDOMAIN");
        Assert.Multiple(() =>
        {
            Assert.That(dig.Status, Is.EqualTo("NXDOMAIN"), dig.ToString);
            Assert.That(dig.Answers, Is.Empty);
            Assert.That(dig.Command.StandardOutput, Does.Contain("; EDE: 15 (Blocked): (egress policy: name not in allowlist)"), dig.ToString);
            Assert.That(plain.Status, Is.EqualTo("NXDOMAIN"), plain.ToString);
            Assert.That(plain.Command.StandardOutput, Does.Not.Contain("OPT PSEUDOSECTION"), "no OPT record for a query without EDNS");
            Assert.That(logLine, Is.Not.Null, () => $"no enclave log line explains the denial:\n{Deployment.Enclave.Output}");
            Assert.That(Dnsmasq.WasAsked(Denied), Is.False, "a denied name reached the upstream");
        });
    }

    [Test]
    public async Task MuslGetsAFinalNegativeAnswerForADeniedNameAtOnce()
    {
        var lookup = await MuslResolver.LookUpAsync(await MuslBinaryAsync(), Topology.Enclave, Denied);
        await TestContext.Out.WriteLineAsync($"musl getaddrinfo({Denied}): {lookup}");
        Assert.Multiple(() =>
        {
            Assert.That(lookup.Error, Is.EqualTo(MuslResolver.NameDoesNotResolve), lookup.ToString);
            Assert.That(lookup.Milliseconds, Is.LessThan(1000), lookup.ToString);
            Assert.That(Dnsmasq.WasAsked(Denied), Is.False, "a denied name reached the upstream");
        });
    }

    [Test]
    public async Task MuslWalksTheSearchListPastADeniedCandidateToAnAllowedName()
    {
        // ndots:5: musl asks www.allowed.test.corp.example first (denied), and goes on to the name as given only
        // when that first answer is a final negative one (NXDOMAIN), not a REFUSED it ignores.
        var resolvConf = Path.Combine("/etc/netns", Topology.Enclave, "resolv.conf");
        var original = await File.ReadAllTextAsync(resolvConf);
        MuslLookup lookup;
        try
        {
            await File.WriteAllTextAsync(resolvConf, original + "search corp.example\noptions ndots:5\n");
            lookup = await MuslResolver.LookUpAsync(await MuslBinaryAsync(), Topology.Enclave, Www);
        }
        finally
        {
            await File.WriteAllTextAsync(resolvConf, original);
        }

        await TestContext.Out.WriteLineAsync($"musl getaddrinfo({Www}) with search corp.example, ndots:5: {lookup}");
        var logLine = await LogLineAsync(Deployment.Enclave, $"denied DNS {Www}.corp.example A");
        Assert.Multiple(() =>
        {
            Assert.That(lookup.Error, Is.Null, lookup.ToString);
            Assert.That(lookup.Addresses, Does.Contain("198.18.0.10"), lookup.ToString);
            Assert.That(lookup.Milliseconds, Is.LessThan(1000), lookup.ToString);
            Assert.That(logLine, Is.Not.Null, () => $"the search-list candidate was not denied:\n{Deployment.Enclave.Output}");
        });
    }

    [Test]
    public async Task GlibcGetentSaysNotFoundForADeniedNameAtOnce()
    {
        var getent = await Command.RunInNamespaceAsync(Topology.Enclave, Clients.Timeout, "getent", "hosts", Denied);
        await TestContext.Out.WriteLineAsync($"getent hosts {Denied}: {getent}");
        Assert.Multiple(() =>
        {
            Assert.That(getent.ExitCode, Is.EqualTo(2), getent.ToString);
            Assert.That(getent.Elapsed, Is.LessThan(TimeSpan.FromSeconds(1)), getent.ToString);
        });
    }

    [Test]
    public async Task GlibcGetnameinfoFallsBackToTheNumericAddressWhenTheReverseNameIsDenied()
    {
        // The PTR name 99.0.18.198.in-addr.arpa is not in the allowlist. glibc's getnameinfo without NI_NAMEREQD
        // gives the numeric address for a final negative answer, but EAI_AGAIN for REFUSED.
        var script = "import socket,sys\ntry:\n print(socket.getnameinfo(('198.18.0.99', 80), 0)[0])\n"
            + "except socket.gaierror as e:\n print('error', e)\n sys.exit(2)\n";
        var lookup = await Command.RunInNamespaceAsync(Topology.Enclave, Clients.Timeout, "python3", "-c", script);
        await TestContext.Out.WriteLineAsync($"getnameinfo(198.18.0.99): {lookup}");
        Assert.Multiple(() =>
        {
            Assert.That(lookup.ExitCode, Is.Zero, lookup.ToString);
            Assert.That(lookup.StandardOutput.Trim(), Is.EqualTo("198.18.0.99"), lookup.ToString);
            Assert.That(lookup.Elapsed, Is.LessThan(TimeSpan.FromSeconds(3)), () => $"python's start included, but no resolver timeout: {lookup}");
        });
    }

    [Test]
    public async Task AWildcardEntryMatchesADeepSubdomainButNotTheApex()
    {
        var deep = await Clients.DigAsync(Topology.Enclave, DeepWild);
        var apex = await Clients.DigAsync(Topology.Enclave, WildApex);
        Assert.Multiple(() =>
        {
            Assert.That(deep.Status, Is.EqualTo("NOERROR"), deep.ToString);
            Assert.That(deep.AnswerData, Is.EqualTo(new[] { "198.18.2.30" }), deep.ToString);
            Assert.That(apex.Status, Is.EqualTo("NXDOMAIN"), apex.ToString);
            Assert.That(Dnsmasq.WasAsked(WildApex), Is.False, "the denied apex reached the upstream");
        });
    }

    [Test]
    public async Task ACaseMixedNameIsMatchedCaseInsensitively()
    {
        var dig = await Clients.DigAsync(Topology.Enclave, "WwW.Allowed.TEST");
        Assert.Multiple(() =>
        {
            Assert.That(dig.Status, Is.EqualTo("NOERROR"), dig.ToString);
            Assert.That(dig.Answers, Is.EqualTo(new[] { new DigRecord("WwW.Allowed.TEST.", DnsmasqServer.DefaultTtlSeconds, "A", "198.18.0.10") }), dig.ToString);
            Assert.That(Deployment.Enclave.Output, Does.Not.Contain("denied DNS WwW.Allowed.TEST"));
        });
    }

    [Test]
    public async Task CurlToAnAllowedNameGetsTheKnownFile()
    {
        var body = await Clients.CurlAsync(Topology.Enclave, $"http://{Www}/");
        var whoami = await Clients.CurlAsync(Topology.Enclave, $"http://{Www}/whoami");
        var logLine = await LogLineAsync(Deployment.Enclave, "connection to 198.18.0.10:80 allowed: learned from www.allowed.test");
        Assert.Multiple(() =>
        {
            Assert.That(body.ExitCode, Is.Zero, body.ToString);
            Assert.That(body.StandardOutput, Is.EqualTo(World.Nginx.IndexBody));
            Assert.That(whoami.StandardOutput, Is.EqualTo("198.18.0.10 80\n"), whoami.ToString);
            Assert.That(logLine, Is.Not.Null, () => $"no enclave log line allows 198.18.0.10:80 as learned from {Www}:\n{Deployment.Enclave.Output}");
        });
    }

    [Test]
    public async Task CurlToADeniedNameFailsAtResolution()
    {
        var curl = await Clients.CurlAsync(Topology.Enclave, $"http://{Denied}/");
        Assert.Multiple(() =>
        {
            Assert.That(curl.ExitCode, Is.EqualTo(Clients.CouldNotResolve), curl.ToString);
            Assert.That(World.Nginx.WasReachedOn(WorldAddresses.Denied), Is.False, "the request reached the world");
        });
    }

    [Test]
    public async Task AnAddressReachableOnlyThroughANameIsDeniedOnBothSidesUntilTheNameIsResolved()
    {
        var url = $"http://{WorldAddresses.Unlisted}/whoami";
        var destination = new IPEndPoint(WorldAddresses.Unlisted, WorldPorts.Http);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));

        var before = await Clients.CurlAsync(Topology.Enclave, url);
        var enclaveLog = await LogLineAsync(Deployment.Enclave, "connection to 198.18.0.11:80 denied: never learned from an allowed name");
        // A hint that is an allowed name makes the parent resolve it itself (egress-host restarted); the address is
        // not in www's answer, so the parent still denies it.
        var parentBefore = await TunnelProbe.RequestAsync(Deployment.TunnelSocketPath, destination, Www, cts.Token);
        var reachedBefore = World.Nginx.WasReachedOn(WorldAddresses.Unlisted);

        var dig = await Clients.DigAsync(Topology.Enclave, Later);
        var after = await Clients.CurlAsync(Topology.Enclave, url);
        var parentAfter = await TunnelProbe.RequestAsync(Deployment.TunnelSocketPath, destination, Later, cts.Token);
        Assert.Multiple(() =>
        {
            Assert.That(before.ExitCode, Is.AnyOf(Clients.RefusedOrReset), before.ToString);
            Assert.That(enclaveLog, Is.Not.Null, () => $"no enclave log line says never learned:\n{Deployment.Enclave.Output}");
            Assert.That(parentBefore.Status, Is.EqualTo(TunnelProbe.StatusDeniedByPolicy), () => $"parent before: {parentBefore.Detail}");
            Assert.That(reachedBefore, Is.False, "the world was reached before the name was resolved");
            Assert.That(dig.AnswerData, Is.EqualTo(new[] { "198.18.0.11" }), dig.ToString);
            Assert.That(after.StandardOutput, Is.EqualTo("198.18.0.11 80\n"), after.ToString);
            Assert.That(parentAfter.Status, Is.EqualTo(TunnelProbe.StatusOk), () => $"parent after: {parentAfter.Detail}");
        });
    }

    [Test]
    public async Task ACnameChainToANameOutsideTheListAllowsTheFinalAddress()
    {
        var dig = await Clients.DigAsync(Topology.Enclave, Cdn);
        var direct = await Clients.DigAsync(Topology.Enclave, Edge);
        var whoami = await Clients.CurlAsync(Topology.Enclave, $"http://{Cdn}/whoami");
        var logLine = await LogLineAsync(Deployment.Enclave, "connection to 198.18.2.10:80 allowed: learned from cdn.allowed.test");
        Assert.Multiple(() =>
        {
            Assert.That(dig.Answers, Is.EqualTo(new[]
            {
                new DigRecord($"{Cdn}.", DnsmasqServer.DefaultTtlSeconds, "CNAME", $"{Edge}."),
                new DigRecord($"{Edge}.", DnsmasqServer.DefaultTtlSeconds, "A", "198.18.2.10"),
            }), dig.ToString);
            Assert.That(direct.Status, Is.EqualTo("NXDOMAIN"), "the CNAME target itself is not in the allowlist");
            Assert.That(whoami.StandardOutput, Is.EqualTo("198.18.2.10 80\n"), whoami.ToString);
            Assert.That(logLine, Is.Not.Null, () => $"no enclave log line allows 198.18.2.10:80 as learned from {Cdn}:\n{Deployment.Enclave.Output}");
        });
    }

    /// <summary>The answer's only address is internal: the app gets no address (NOERROR, no data), and the address
    /// stays denied on both sides when asked for directly.</summary>
    [Test]
    public async Task ARebindingAnswerReachesTheAppWithoutItsAddressWhichStaysDeniedOnBothSides()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var dig = await Clients.DigAsync(Topology.Enclave, Meta);
        var curl = await Clients.CurlAsync(Topology.Enclave, $"http://{Meta}/");
        var direct = await Clients.CurlAsync(Topology.Enclave, $"http://{WorldAddresses.Metadata}/", "-H", $"Host: {Meta}");
        var parent = await TunnelProbe.RequestAsync(Deployment.TunnelSocketPath, new IPEndPoint(WorldAddresses.Metadata, WorldPorts.Http), Meta, cts.Token);
        var rebinding = "DNS rebinding refused: meta.allowed.test answered 169.254.169.254: not learned: internal range link-local 169.254.0.0/16 (instance metadata)";
        var enclaveRebinding = await LogLineAsync(Deployment.Enclave, rebinding);
        var hostRebinding = await LogLineAsync(Deployment.Host, rebinding);
        var enclaveDenial = await LogLineAsync(Deployment.Enclave, "connection to 169.254.169.254:80 denied: internal range link-local 169.254.0.0/16");
        Assert.Multiple(() =>
        {
            Assert.That(dig.Status, Is.EqualTo("NOERROR"), dig.ToString);
            Assert.That(dig.Answers, Is.Empty, dig.ToString);
            Assert.That(curl.ExitCode, Is.EqualTo(6), () => $"curl cannot resolve the name: {curl}");
            Assert.That(direct.ExitCode, Is.AnyOf(Clients.RefusedOrReset), direct.ToString);
            Assert.That(parent.Status, Is.EqualTo(TunnelProbe.StatusDeniedByPolicy), () => $"parent: {parent.Detail}");
            Assert.That(enclaveRebinding, Is.Not.Null, () => $"enclave log:\n{Deployment.Enclave.Output}");
            Assert.That(hostRebinding, Is.Not.Null, () => $"host log:\n{Deployment.Host.Output}");
            Assert.That(enclaveDenial, Is.Not.Null, () => $"enclave log:\n{Deployment.Enclave.Output}");
            Assert.That(World.Nginx.WasReachedOn(WorldAddresses.Metadata), Is.False, "the metadata address was reached");
        });
    }

    /// <summary>From the app-runtime trial: an allowed name with a unique-local AAAA beside a public A sent curl to the
    /// AAAA first (glibc sorts it before IPv4 in the enclave, whose own address is unique-local); the proxy denied it
    /// and reset curl (exit 56), which never tried the A. The forwarder now takes the internal AAAA out.</summary>
    [Test]
    public async Task AnInternalAddressBesideAPublicOneIsRemovedSoTheAppReachesThePublicOne()
    {
        var aaaa = await Clients.DigAsync(Topology.Enclave, Mixed, "AAAA");
        var a = await Clients.DigAsync(Topology.Enclave, Mixed, "A");
        var curl = await Clients.CurlAsync(Topology.Enclave, $"http://{Mixed}/");
        var python = await Clients.ShellAsync(Topology.Enclave, $"python3 -c 'import urllib.request as u; print(u.urlopen(\"http://{Mixed}/\", timeout=5).status)'");
        Assert.Multiple(() =>
        {
            Assert.That((aaaa.Status, aaaa.Answers.Count), Is.EqualTo(("NOERROR", 0)), aaaa.ToString);
            Assert.That(a.AnswerData, Is.EqualTo(new[] { WorldAddresses.Allowed.ToString() }), a.ToString);
            Assert.That(curl.ExitCode, Is.Zero, curl.ToString);
            Assert.That(curl.StandardOutput, Is.EqualTo(World.Nginx.IndexBody), curl.ToString);
            Assert.That((python.ExitCode, python.StandardOutput), Is.EqualTo((0, "200\n")), python.ToString);
        });
    }

    [Test]
    public async Task AnAnswerLargerThan512BytesReachesDigWholeOverTcpAfterTruncation()
    {
        var expected = BigAddresses.Select(address => address.ToString()).ToArray();
        var classic = await Clients.DigAsync(Topology.Enclave, "+noedns", Big);
        var edns = await Clients.DigAsync(Topology.Enclave, Big);
        Assert.Multiple(() =>
        {
            Assert.That(classic.RetriedOverTcp, Is.True, () => $"the forwarder's UDP answer must be truncated (TC=1):\n{classic}");
            Assert.That(classic.Transport, Is.EqualTo("TCP"), classic.ToString);
            Assert.That(classic.Status, Is.EqualTo("NOERROR"), classic.ToString);
            Assert.That(classic.AnswerData, Is.EquivalentTo(expected), classic.ToString);
            Assert.That(classic.Answers.Select(record => record.Name).Distinct(), Is.EqualTo(new[] { $"{Big}." }));
            Assert.That(edns.RetriedOverTcp, Is.False, () => $"an EDNS client announcing 1232 bytes takes the answer over UDP:\n{edns}");
            Assert.That(edns.Transport, Is.EqualTo("UDP"), edns.ToString);
            Assert.That(edns.AnswerData, Is.EquivalentTo(expected), edns.ToString);
        });
    }

    [Test]
    public async Task ATruncatedUdpAnswerKeepsEveryWholeRecordThatFits()
    {
        // dig +ignore keeps the UDP answer despite TC=1: 12 + 22 (question) + 16 per record with a pointer: 29
        // records fit 512 bytes (dnsmasq's own cut is 29 too); before, the forwarder sent none.
        var expected = BigAddresses.Select(address => address.ToString()).ToArray();
        var cut = await Clients.DigAsync(Topology.Enclave, "+noedns", "+notcp", "+ignore", Big);
        Assert.Multiple(() =>
        {
            Assert.That(cut.Flags, Does.Contain("tc"), cut.ToString);
            Assert.That(cut.Transport, Is.EqualTo("UDP"), cut.ToString);
            Assert.That(cut.Status, Is.EqualTo("NOERROR"), cut.ToString);
            Assert.That(cut.AnswerData, Has.Count.EqualTo(29), cut.ToString);
            Assert.That(cut.AnswerData, Is.SubsetOf(expected), cut.ToString);
        });
    }

    [Test]
    public async Task ALearnedAddressExpiresAfterTtlFloorAndGraceAndResolvingAgainAllowsItAgain()
    {
        var url = $"http://{WorldAddresses.ShortTtl}/whoami";
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var dig = await Clients.DigAsync(Topology.Enclave, ShortLived);
        var first = await Clients.CurlAsync(Topology.Enclave, url);

        // TTL 1 s, floor 1 s, grace 1 s: allowed until 2 s after the answer. Wait well past that.
        await Task.Delay(TimeSpan.FromSeconds(3.5));
        var expired = await Clients.CurlAsync(Topology.Enclave, url);
        var enclaveLog = await Deployment.Enclave.WaitForLineAsync(
            line => line.Contains("connection to 198.18.2.20:80 denied: learned from ttl.allowed.test, expired ", StringComparison.Ordinal)
                && line.EndsWith(" ago", StringComparison.Ordinal),
            TimeSpan.FromSeconds(3));
        var parentExpired = await TunnelProbe.RequestAsync(Deployment.TunnelSocketPath, new IPEndPoint(WorldAddresses.ShortTtl, WorldPorts.Http), ShortLived, cts.Token);

        var again = await Clients.DigAsync(Topology.Enclave, ShortLived);
        var second = await Clients.CurlAsync(Topology.Enclave, url);
        Assert.Multiple(() =>
        {
            Assert.That(dig.Answers, Is.EqualTo(new[] { new DigRecord($"{ShortLived}.", 1, "A", "198.18.2.20") }), dig.ToString);
            Assert.That(first.StandardOutput, Is.EqualTo("198.18.2.20 80\n"), first.ToString);
            Assert.That(expired.ExitCode, Is.AnyOf(Clients.RefusedOrReset), expired.ToString);
            Assert.That(enclaveLog, Is.Not.Null, () => $"no enclave log line says the address expired:\n{Deployment.Enclave.Output}");
            Assert.That(parentExpired.Status, Is.EqualTo(TunnelProbe.StatusDeniedByPolicy), () => $"parent: {parentExpired.Detail}");
            Assert.That(again.AnswerData, Is.EqualTo(new[] { "198.18.2.20" }), again.ToString);
            Assert.That(second.StandardOutput, Is.EqualTo("198.18.2.20 80\n"), second.ToString);
        });
    }

    /// <summary>A learned address is kept for a day at most, so no TTL dig reads is longer (30 days upstream); before
    /// 4 December the TTL came through as it was, and an app that cached the answer that long was denied after a day.</summary>
    [TestCase("+notcp")]
    [TestCase("+tcp")]
    public async Task ATtlOfThirtyDaysReachesTheAppAsOneDay(string transportOption)
    {
        var dig = await Clients.DigAsync(Topology.Enclave, transportOption, LongLived);

        Assert.That(dig.Answers, Is.EqualTo(new[] { new DigRecord($"{LongLived}.", 86_400, "A", "198.18.0.10") }), dig.ToString);
    }

    [Test]
    public async Task AnAaaaAnswerTeachesAnIpv6AddressThatNoEntryAllows()
    {
        var check = await CheckAsync("2001:db8::10");
        var dig = await Clients.DigAsync(Topology.Enclave, V6, "AAAA");
        var whoami = await Clients.CurlAsync(Topology.Enclave, $"http://{V6}/whoami", "-6");
        Assert.Multiple(() =>
        {
            Assert.That(check.ExitCode, Is.EqualTo(1), check.ToString);
            Assert.That(check.StandardOutput, Does.Contain("connect: denied: never learned from an allowed name"), check.ToString);
            Assert.That(dig.Answers, Is.EqualTo(new[] { new DigRecord($"{V6}.", DnsmasqServer.DefaultTtlSeconds, "AAAA", "2001:db8::10") }), dig.ToString);
            Assert.That(whoami.ExitCode, Is.Zero, whoami.ToString);
            Assert.That(whoami.StandardOutput, Is.EqualTo("2001:db8::10 80\n"), whoami.ToString);
        });
    }

    [Test]
    public async Task DnsClientGetsTheSameAnswersAsDig()
    {
        var cases = new (string Name, QueryType Type, string DigType, bool TcpOnly, int BufferSize)[]
        {
            (Www, QueryType.A, "A", false, 4096),
            (V6, QueryType.AAAA, "AAAA", false, 4096),
            (Big, QueryType.A, "A", false, 4096),
            (Big, QueryType.A, "A", false, 512),
            (Big, QueryType.A, "A", true, 4096),
        };
        foreach (var (name, type, digType, tcpOnly, bufferSize) in cases)
        {
            var dig = await Clients.DigAsync(Topology.Enclave, name, digType);
            var response = EnclaveDnsClient.Query(Topology.Enclave, name, type, tcpOnly, bufferSize);
            var label = $"{name} {type} tcpOnly={tcpOnly} buffer={bufferSize}";
            Assert.Multiple(() =>
            {
                Assert.That(response.HasError, Is.False, () => $"{label}: {response.ErrorMessage}");
                Assert.That(response.Header.ResponseCode, Is.EqualTo(DnsHeaderResponseCode.NoError), label);
                Assert.That(response.Answers.Select(Describe), Is.EquivalentTo(dig.Answers), label);
            });
        }

        var denied = EnclaveDnsClient.Query(Topology.Enclave, Denied, QueryType.A);
        Assert.That(denied.Header.ResponseCode, Is.EqualTo(DnsHeaderResponseCode.NotExistentDomain));
    }

    [TestCase(Www, 0, "dns:     allowed: name matches \"www.allowed.test\"")]
    [TestCase(DeepWild, 0, "dns:     allowed: name matches \"*.wild.test\"")]
    [TestCase(Denied, 1, "dns:     denied: name not in allowlist")]
    [TestCase("169.254.169.254", 1, "connect: denied: internal range link-local 169.254.0.0/16 (instance metadata)")]
    public async Task CheckExplainsTheStaticPolicy(string target, int exitCode, string line)
    {
        var check = await CheckAsync(target);
        Assert.Multiple(() =>
        {
            Assert.That(check.ExitCode, Is.EqualTo(exitCode), check.ToString);
            Assert.That(check.StandardOutput.Split('\n'), Does.Contain(line), check.ToString);
        });
    }

    private static DigRecord Describe(DnsResourceRecord record) => record switch
    {
        ARecord a => new DigRecord(a.DomainName.Value, a.InitialTimeToLive, "A", a.Address.ToString()),
        AaaaRecord aaaa => new DigRecord(aaaa.DomainName.Value, aaaa.InitialTimeToLive, "AAAA", aaaa.Address.ToString()),
        CNameRecord cname => new DigRecord(cname.DomainName.Value, cname.InitialTimeToLive, "CNAME", cname.CanonicalName.Value),
        _ => new DigRecord(record.DomainName.Value, record.InitialTimeToLive, record.RecordType.ToString(), record.ToString()),
    };

    private Task<CommandResult> CheckAsync(string target) =>
        Command.RunAsync(HostBinaries.Enclave("check", target, "--config", Deployment.ConfigPath), Clients.Timeout);

    private async Task<string> MuslBinaryAsync() => muslBinary ??= await MuslResolver.BuildAsync(Topology.WorkDirectory);
}
