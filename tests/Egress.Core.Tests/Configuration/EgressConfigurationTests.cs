using System.Net;
using Egress.Configuration;

namespace Egress.Tests.Configuration;

public sealed class EgressConfigurationTests
{
    private const string Source = "enclave.toml";

    private const string FullFile = """
        [egress]
        enabled = true
        destinations = ["api.example.com", "*.example.org", "198.18.0.0/15", "2001:db8::/32"]

        [tunnel]
        enclave_endpoint = "unix:/run/egress.sock"
        host_endpoint = "tcp://127.0.0.1:9000"
        status_timeout_ms = 7500

        [enclave]
        proxy_listen = ["127.0.0.1:5555", "[::1]:5556"]
        dns_listen = ["127.0.0.1:5353", "[::1]:5353"]
        dns_query_timeout_ms = 4000
        netfilter = "legacy"

        [host]
        connect_timeout_ms = 3000
        header_timeout_ms = 1500
        dns_upstreams = ["10.0.0.2", "10.0.0.3:5353", "[2001:db8::1]:54", "2001:db8::2", "[2001:db8::3]"]
        dns_timeout_ms = 900
        max_streams = 20000
        keepalive_idle_seconds = 30
        keepalive_interval_seconds = 5
        keepalive_probes = 4

        [dns]
        ttl_floor_seconds = 0
        grace_seconds = 15
        cache_max_entries = 1024

        [relay]
        idle_timeout_seconds = 120
        splice = false
        """;

    // Shaped like the files evervault-cli writes (`ev enclave init` and later commands), values invented.
    private const string EvervaultFile = """
        version = 1
        name = "payments-enclave"
        uuid = "enclave_1a2b3c"
        app_uuid = "app_4d5e6f"
        team_uuid = "team_7a8b9c"
        debug = false
        dockerfile = "./Dockerfile"
        api_key_auth = true
        trx_logging = true
        tls_termination = true
        forward_proxy_protocol = false
        trusted_headers = ["X-Request-Id"]
        healthcheck = { path = "/health", port = 3000 }

        [egress]
        enabled = true
        destinations = ["api.stripe.com", "*.amazonaws.com"]

        [scaling]
        desired_replicas = 2

        [service]
        port = 8008

        [signing]
        certPath = "./cert.pem"
        keyPath = "./key.pem"

        [attestation]
        HashAlgorithm = "Sha384 { ... }"
        PCR0 = "1cd2135a6358458e390904fac3568eff4e6c7882c22e7925a830c8ba6b9b1ae117dd714cad64b1001475923a242fc887"
        PCR1 = "bcdf05fefccaa8e55bf2c8d6dee9e79bbff31e34bf28a99aa19e6b29c37ee80b214a414b7607236edf26fcb78654e63f"
        PCR2 = "42997b22af1f96a6b32372402af03a5d16e47316e7990314bdb01c0759fa11a7ae88e3ae2f3628b1c1ab734ea2f2ba34"
        PCR8 = "a94237284c822603176cfe5abbf62664a786b8eef7c5ead7ff725fc2750f06520ce775fec55405ac1837cf2c42e1443a"

        [runtime]
        data_plane_version = "0.0.39"
        installer_version = "b8073166b7c5bc8fe2abf192f66e1106f2d4be547b1841be69f95ff2c4ea578c"
        """;

    [Test]
    public void DefaultHasEveryDocumentedDefault()
    {
        EgressConfiguration configuration = EgressConfiguration.Default;

        Assert.Multiple(() =>
        {
            Assert.That(configuration.SourceName, Is.EqualTo("(defaults)"));
            Assert.That(configuration.Egress.Enabled, Is.False);
            Assert.That(configuration.Egress.Destinations, Is.Empty);
            Assert.That(configuration.Tunnel.EnclaveEndpoint, Is.EqualTo("vsock://3:4433"));
            Assert.That(configuration.Tunnel.HostEndpoint, Is.EqualTo("vsock://any:4433"));
            Assert.That(configuration.Tunnel.StatusTimeout, Is.EqualTo(TimeSpan.FromSeconds(10)));
            Assert.That(configuration.Enclave.ProxyListen, Is.EqualTo(new[] { new IPEndPoint(IPAddress.Loopback, 4444), new IPEndPoint(IPAddress.IPv6Loopback, 4444) }));
            Assert.That(configuration.Enclave.DnsListen, Is.EqualTo(new[] { new IPEndPoint(IPAddress.Loopback, 53), new IPEndPoint(IPAddress.IPv6Loopback, 53) }));
            Assert.That(configuration.Enclave.DnsQueryTimeout, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(configuration.Enclave.Netfilter, Is.EqualTo(NetfilterBackend.Auto));
            Assert.That(configuration.Enclave.MaxConnections, Is.Zero, "derived from RLIMIT_NOFILE");
            Assert.That(configuration.Host.ConnectTimeout, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(configuration.Host.HeaderTimeout, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(configuration.Host.DnsUpstreams, Is.Empty);
            Assert.That(configuration.Host.DnsTimeout, Is.EqualTo(TimeSpan.FromSeconds(2)));
            Assert.That(configuration.Host.MaxStreams, Is.Zero, "derived from RLIMIT_NOFILE");
            Assert.That(configuration.Host.KeepAliveIdle, Is.EqualTo(TimeSpan.FromSeconds(60)));
            Assert.That(configuration.Host.KeepAliveInterval, Is.EqualTo(TimeSpan.FromSeconds(10)));
            Assert.That(configuration.Host.KeepAliveProbes, Is.EqualTo(6));
            Assert.That(
                configuration.Host.KeepAliveIdle + (configuration.Host.KeepAliveProbes * configuration.Host.KeepAliveInterval),
                Is.LessThan(TimeSpan.FromSeconds(350)),
                "a dead destination is noticed before an AWS NAT gateway drops the idle flow");
            Assert.That(configuration.Dns.TtlFloor, Is.EqualTo(TimeSpan.FromSeconds(30)));
            Assert.That(configuration.Dns.Grace, Is.EqualTo(TimeSpan.FromSeconds(60)));
            Assert.That(configuration.Dns.CacheMaxEntries, Is.EqualTo(65536));
            Assert.That(configuration.Relay.IdleTimeout, Is.EqualTo(TimeSpan.FromHours(1)));
            Assert.That(configuration.Relay.Splice, Is.True);
            Assert.That(configuration.GetLocation("egress.enabled"), Is.Null);
        });
    }

    [TestCase("", TestName = "Empty file")]
    [TestCase("# only a comment\n\n", TestName = "Comment-only file")]
    [TestCase("[egress]\n[tunnel]\n[enclave]\n[host]\n[dns]\n[relay]\n", TestName = "Empty sections")]
    public void FileWithoutValuesGivesTheDefaults(string text) =>
        AssertSameValues(EgressConfiguration.Parse(text, Source), EgressConfiguration.Default);

    [Test]
    public void MaxConnectionsIsRead() =>
        Assert.That(EgressConfiguration.Parse("[enclave]\nmax_connections = 3000\n", Source).Enclave.MaxConnections, Is.EqualTo(3000));

    [Test]
    public void FullFileIsRead()
    {
        EgressConfiguration configuration = EgressConfiguration.Parse(FullFile, Source);

        Assert.Multiple(() =>
        {
            Assert.That(configuration.SourceName, Is.EqualTo(Source));
            Assert.That(configuration.Egress.Enabled, Is.True);
            Assert.That(configuration.Egress.Destinations, Is.EqualTo(new[] { "api.example.com", "*.example.org", "198.18.0.0/15", "2001:db8::/32" }));
            Assert.That(configuration.Tunnel.EnclaveEndpoint, Is.EqualTo("unix:/run/egress.sock"));
            Assert.That(configuration.Tunnel.HostEndpoint, Is.EqualTo("tcp://127.0.0.1:9000"));
            Assert.That(configuration.Tunnel.StatusTimeout, Is.EqualTo(TimeSpan.FromMilliseconds(7500)));
            Assert.That(configuration.Enclave.ProxyListen, Is.EqualTo(new[] { IPEndPoint.Parse("127.0.0.1:5555"), IPEndPoint.Parse("[::1]:5556") }));
            Assert.That(configuration.Enclave.DnsListen, Is.EqualTo(new[] { IPEndPoint.Parse("127.0.0.1:5353"), IPEndPoint.Parse("[::1]:5353") }));
            Assert.That(configuration.Enclave.DnsQueryTimeout, Is.EqualTo(TimeSpan.FromSeconds(4)));
            Assert.That(configuration.Enclave.Netfilter, Is.EqualTo(NetfilterBackend.Legacy));
            Assert.That(configuration.Host.ConnectTimeout, Is.EqualTo(TimeSpan.FromSeconds(3)));
            Assert.That(configuration.Host.HeaderTimeout, Is.EqualTo(TimeSpan.FromMilliseconds(1500)));
            Assert.That(configuration.Host.DnsUpstreams, Is.EqualTo(new[]
            {
                IPEndPoint.Parse("10.0.0.2:53"), IPEndPoint.Parse("10.0.0.3:5353"), IPEndPoint.Parse("[2001:db8::1]:54"),
                IPEndPoint.Parse("[2001:db8::2]:53"), IPEndPoint.Parse("[2001:db8::3]:53"),
            }));
            Assert.That(configuration.Host.DnsTimeout, Is.EqualTo(TimeSpan.FromMilliseconds(900)));
            Assert.That(configuration.Host.MaxStreams, Is.EqualTo(20000));
            Assert.That(configuration.Host.KeepAliveIdle, Is.EqualTo(TimeSpan.FromSeconds(30)));
            Assert.That(configuration.Host.KeepAliveInterval, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(configuration.Host.KeepAliveProbes, Is.EqualTo(4));
            Assert.That(configuration.Dns.TtlFloor, Is.EqualTo(TimeSpan.Zero));
            Assert.That(configuration.Dns.Grace, Is.EqualTo(TimeSpan.FromSeconds(15)));
            Assert.That(configuration.Dns.CacheMaxEntries, Is.EqualTo(1024));
            Assert.That(configuration.Relay.IdleTimeout, Is.EqualTo(TimeSpan.FromMinutes(2)));
            Assert.That(configuration.Relay.Splice, Is.False);
        });
    }

    [Test]
    public void CrLfLineEndingsReadTheSameValuesAndLocations()
    {
        string crlf = FullFile.ReplaceLineEndings("\r\n");
        Assume.That(crlf, Does.Contain("\r\n"));

        EgressConfiguration lf = EgressConfiguration.Parse(FullFile.ReplaceLineEndings("\n"), Source);
        EgressConfiguration configuration = EgressConfiguration.Parse(crlf, Source);

        AssertSameValues(configuration, lf);
        Assert.That(configuration.GetLocation("host.dns_timeout_ms"), Is.EqualTo(new SourceLocation(Source, 20, 18)));
        Assert.That(configuration.GetLocation("enclave.netfilter"), Is.EqualTo(new SourceLocation(Source, 14, 13)));
    }

    [Test]
    public void EvervaultFileLoadsAndOnlyEgressIsRead()
    {
        EgressConfiguration configuration = EgressConfiguration.Parse(EvervaultFile, Source);

        Assert.Multiple(() =>
        {
            Assert.That(configuration.Egress.Enabled, Is.True);
            Assert.That(configuration.Egress.Destinations, Is.EqualTo(new[] { "api.stripe.com", "*.amazonaws.com" }));
            Assert.That(configuration.Tunnel.StatusTimeout, Is.EqualTo(EgressConfiguration.Default.Tunnel.StatusTimeout));
        });
    }

    [Test]
    public void EvervaultLegacyKeysAndHealthcheckStringAreAccepted()
    {
        // cage.toml (v0) spelling: disable_tls_termination, a string healthcheck, a [reproducible] table.
        const string text = """
            name = "old-cage"
            disable_tls_termination = false
            healthcheck = "/health"

            [egress]
            enabled = false

            [reproducible]
            git_hash = "f24b706c6c1b2ef9c51b1adb6fd548efbf3259dc"
            timestamp = "1683570483"
            """;

        Assert.That(EgressConfiguration.Parse(text, Source).Egress.Enabled, Is.False);
    }

    [Test]
    public void EgressEnabledWithoutDestinationsAllowsNothing()
    {
        // Evervault would allow every destination here; Egress fails closed.
        EgressConfiguration configuration = EgressConfiguration.Parse("[egress]\nenabled = true\n", Source);

        Assert.Multiple(() =>
        {
            Assert.That(configuration.Egress.Enabled, Is.True);
            Assert.That(configuration.Egress.Destinations, Is.Empty);
        });
    }

    [Test]
    public void DottedKeysAndInlineTablesAreTheSameAsSections()
    {
        const string text = """
            egress.enabled = true
            tunnel = { status_timeout_ms = 6000 }
            [host]
            connect_timeout_ms = 1000
            """;

        EgressConfiguration configuration = EgressConfiguration.Parse(text, Source);

        Assert.Multiple(() =>
        {
            Assert.That(configuration.Egress.Enabled, Is.True);
            Assert.That(configuration.Tunnel.StatusTimeout, Is.EqualTo(TimeSpan.FromSeconds(6)));
            Assert.That(configuration.Host.ConnectTimeout, Is.EqualTo(TimeSpan.FromSeconds(1)));
        });
    }

    [Test]
    public void IdleTimeoutZeroMeansInfinite() =>
        Assert.That(EgressConfiguration.Parse("[relay]\nidle_timeout_seconds = 0\n", Source).Relay.IdleTimeout, Is.EqualTo(Timeout.InfiniteTimeSpan));

    [Test]
    public void HalfClosedTimeoutIsReadAndZeroMeansNone()
    {
        EgressConfiguration set = EgressConfiguration.Parse("[relay]\nhalf_closed_timeout_seconds = 30\n", Source);
        EgressConfiguration none = EgressConfiguration.Parse("[relay]\nhalf_closed_timeout_seconds = 0\n", Source);

        Assert.Multiple(() =>
        {
            Assert.That(set.Relay.HalfClosedTimeout, Is.EqualTo(TimeSpan.FromSeconds(30)));
            Assert.That(set.CreateRelayOptions().HalfClosedTimeout, Is.EqualTo(TimeSpan.FromSeconds(30)), "what the relays take");
            Assert.That(none.CreateRelayOptions().HalfClosedTimeout, Is.EqualTo(Timeout.InfiniteTimeSpan));
        });
    }

    [Test]
    public void EmptyDnsListenIsRejectedButEmptyUpstreamsMeanTheSystemResolvers()
    {
        Assert.That(EgressConfiguration.Parse("[host]\ndns_upstreams = []\n", Source).Host.DnsUpstreams, Is.Empty);
        Assert.That(() => EgressConfiguration.Parse("[enclave]\ndns_listen = []\n", Source), Throws.TypeOf<ConfigurationException>()
            .With.Message.EqualTo("enclave.toml:2:14: error: must list at least one address (key 'enclave.dns_listen')"));
    }

    [Test]
    public void ListsCannotBeModifiedThroughTheirInterface()
    {
        EgressConfiguration configuration = EgressConfiguration.Parse(FullFile, Source);

        Assert.Multiple(() =>
        {
            Assert.That(configuration.Egress.Destinations, Is.Not.InstanceOf<string[]>());
            Assert.That(((ICollection<string>)configuration.Egress.Destinations).IsReadOnly, Is.True);
            Assert.That(((ICollection<IPEndPoint>)configuration.Enclave.ProxyListen).IsReadOnly, Is.True);
        });
    }

    [Test]
    public void LocationsOfValuesAndArrayElementsAreKept()
    {
        const string text = "[egress]\nenabled = true\ndestinations = [\n  \"api.example.com\",\n    \"a.*.com\",\n]\n";

        EgressConfiguration configuration = EgressConfiguration.Parse(text, Source);

        Assert.Multiple(() =>
        {
            Assert.That(configuration.GetLocation("egress.enabled"), Is.EqualTo(new SourceLocation(Source, 2, 11)));
            Assert.That(configuration.GetLocation("egress.destinations"), Is.EqualTo(new SourceLocation(Source, 3, 16)));
            Assert.That(configuration.GetLocation("egress.destinations", 0), Is.EqualTo(new SourceLocation(Source, 4, 3)));
            Assert.That(configuration.GetLocation("egress.destinations", 1), Is.EqualTo(new SourceLocation(Source, 5, 5)));
            Assert.That(configuration.GetLocation("egress.destinations", 2), Is.Null);
            Assert.That(configuration.GetLocation("tunnel.enclave_endpoint"), Is.Null);
        });
    }

    [Test]
    public void CreateExceptionLocatesAnotherModulesErrorAtTheArrayElement()
    {
        EgressConfiguration configuration = EgressConfiguration.Parse("[egress]\ndestinations = [\"ok.example.com\", \"a.*.com\"]\n", Source);

        ConfigurationException error = configuration.CreateException("egress.destinations", "invalid destination \"a.*.com\": wildcard only as the first label", 1);

        Assert.Multiple(() =>
        {
            Assert.That(error.Message, Is.EqualTo("enclave.toml:2:35: error: invalid destination \"a.*.com\": wildcard only as the first label (key 'egress.destinations')"));
            Assert.That((error.Line, error.Column), Is.EqualTo((2, 35)));
            Assert.That(error.Key, Is.EqualTo("egress.destinations"));
        });
    }

    [Test]
    public void CreateExceptionFallsBackToTheValueThenToTheSource()
    {
        EgressConfiguration configuration = EgressConfiguration.Parse("[tunnel]\nhost_endpoint = \"vsock://x\"\n", Source);

        ConfigurationException atValue = configuration.CreateException("tunnel.host_endpoint", "bad endpoint", 3);
        ConfigurationException atDefault = configuration.CreateException("tunnel.enclave_endpoint", "bad endpoint");

        Assert.Multiple(() =>
        {
            Assert.That(atValue.Message, Is.EqualTo("enclave.toml:2:17: error: bad endpoint (key 'tunnel.host_endpoint')"));
            Assert.That(atDefault.Message, Is.EqualTo("enclave.toml: error: bad endpoint (key 'tunnel.enclave_endpoint')"));
            Assert.That((atDefault.Line, atDefault.Column), Is.EqualTo((0, 0)));
        });
    }

    [TestCase("require", Egress.Tls.TlsServerNameMode.Require)]
    [TestCase("if-present", Egress.Tls.TlsServerNameMode.IfPresent)]
    [TestCase("off", Egress.Tls.TlsServerNameMode.Off)]
    public void TlsServerNameTakesEachModeByNameAndTheCreatedPolicyEnforcesIt(string value, Egress.Tls.TlsServerNameMode expected)
    {
        var configuration = EgressConfiguration.Parse($"[egress]\ntls_server_name = \"{value}\"\n", Source);

        Assert.That(configuration.Egress.TlsServerName, Is.EqualTo(expected));
        Assert.That(configuration.CreatePolicy(configuration.CreateCache()).TlsServerName, Is.EqualTo(expected));
    }

    [Test]
    public void TlsServerNameDefaultsToRequire() =>
        Assert.That(EgressConfiguration.Parse("[egress]\nenabled = true\n", Source).Egress.TlsServerName, Is.EqualTo(Egress.Tls.TlsServerNameMode.Require));

    [TestCase("auto", NetfilterBackend.Auto)]
    [TestCase("nft", NetfilterBackend.Nft)]
    [TestCase("legacy", NetfilterBackend.Legacy)]
    public void NetfilterTakesEachBackendByName(string value, NetfilterBackend expected) =>
        Assert.That(EgressConfiguration.Parse($"[enclave]\nnetfilter = \"{value}\"\n", Source).Enclave.Netfilter, Is.EqualTo(expected));

    [Test]
    public void LoadNamesErrorsAfterThePath()
    {
        string path = Path.Combine(Path.GetTempPath(), $"egress-config-{Guid.NewGuid():N}.toml");
        File.WriteAllText(path, "[egress]\nenabeld = true\n");
        try
        {
            Assert.That(() => EgressConfiguration.Load(path), Throws.TypeOf<ConfigurationException>()
                .With.Message.EqualTo($"{path}:2:1: error: unknown key; did you mean 'enabled'? (key 'egress.enabeld')"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void LoadOfAMissingFileThrowsFileNotFound() =>
        Assert.That(() => EgressConfiguration.Load(Path.Combine(Path.GetTempPath(), $"missing-{Guid.NewGuid():N}.toml")), Throws.TypeOf<FileNotFoundException>());

    [Test]
    public void SampleFileLoads()
    {
        string path = Path.Combine(RepositoryFiles.Root(), "samples", "enclave.toml");

        EgressConfiguration configuration = EgressConfiguration.Load(path);

        Assert.Multiple(() =>
        {
            Assert.That(configuration.SourceName, Is.EqualTo(path));
            Assert.That(configuration.Egress.Enabled, Is.True);
            Assert.That(configuration.Egress.Destinations, Is.EqualTo(new[] { "198.18.0.10", "2001:db8::/64", "*.egress.test", "api.example.com" }));
            Assert.That(configuration.Tunnel.EnclaveEndpoint, Is.EqualTo("vsock://3:4433"));
            Assert.That(configuration.Enclave.ProxyListen, Is.EqualTo(EgressConfiguration.Default.Enclave.ProxyListen));
            Assert.That(configuration.Relay.IdleTimeout, Is.EqualTo(TimeSpan.FromHours(1)));
        });
    }

    [Test]
    public void EvervaultKeyListIsSortedForBinarySearch() =>
        Assert.That(EvervaultKeys.Names, Is.Ordered.Using((IComparer<string>)StringComparer.Ordinal));

    private static void AssertSameValues(EgressConfiguration actual, EgressConfiguration expected) =>
        Assert.Multiple(() =>
        {
            Assert.That(actual.Egress.Enabled, Is.EqualTo(expected.Egress.Enabled));
            Assert.That(actual.Egress.Destinations, Is.EqualTo(expected.Egress.Destinations));
            Assert.That(actual.Tunnel.EnclaveEndpoint, Is.EqualTo(expected.Tunnel.EnclaveEndpoint));
            Assert.That(actual.Tunnel.HostEndpoint, Is.EqualTo(expected.Tunnel.HostEndpoint));
            Assert.That(actual.Tunnel.StatusTimeout, Is.EqualTo(expected.Tunnel.StatusTimeout));
            Assert.That(actual.Enclave.ProxyListen, Is.EqualTo(expected.Enclave.ProxyListen));
            Assert.That(actual.Enclave.DnsListen, Is.EqualTo(expected.Enclave.DnsListen));
            Assert.That(actual.Enclave.DnsQueryTimeout, Is.EqualTo(expected.Enclave.DnsQueryTimeout));
            Assert.That(actual.Enclave.Netfilter, Is.EqualTo(expected.Enclave.Netfilter));
            Assert.That(actual.Host.ConnectTimeout, Is.EqualTo(expected.Host.ConnectTimeout));
            Assert.That(actual.Host.HeaderTimeout, Is.EqualTo(expected.Host.HeaderTimeout));
            Assert.That(actual.Host.DnsUpstreams, Is.EqualTo(expected.Host.DnsUpstreams));
            Assert.That(actual.Host.DnsTimeout, Is.EqualTo(expected.Host.DnsTimeout));
            Assert.That(actual.Host.KeepAliveIdle, Is.EqualTo(expected.Host.KeepAliveIdle));
            Assert.That(actual.Host.KeepAliveInterval, Is.EqualTo(expected.Host.KeepAliveInterval));
            Assert.That(actual.Host.KeepAliveProbes, Is.EqualTo(expected.Host.KeepAliveProbes));
            Assert.That(actual.Dns.TtlFloor, Is.EqualTo(expected.Dns.TtlFloor));
            Assert.That(actual.Dns.Grace, Is.EqualTo(expected.Dns.Grace));
            Assert.That(actual.Dns.CacheMaxEntries, Is.EqualTo(expected.Dns.CacheMaxEntries));
            Assert.That(actual.Relay.IdleTimeout, Is.EqualTo(expected.Relay.IdleTimeout));
            Assert.That(actual.Relay.Splice, Is.EqualTo(expected.Relay.Splice));
        });
}
