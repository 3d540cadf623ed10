using System.Text.RegularExpressions;
using Egress.Configuration;
using Egress.Dns.Forwarder;
using Egress.Gateway;
using Egress.Policy;
using Egress.Proxy;
using Egress.Relay;
using Egress.Tunnel;

namespace Egress.Tests.Configuration;

/// <summary>
/// The key table (<see cref="ConfigurationKeys"/>) against what uses it: the configured defaults, the options types'
/// defaults (an embedding consumer that builds options itself must get what an empty enclave.toml gives) and
/// docs/configuration.md.
/// </summary>
public sealed class ConfigurationKeysTests
{
    private static readonly TunnelEndpoint AnyTunnel = TunnelEndpoint.Parse("unix:/run/egress-test.sock");

    /// <summary>
    /// For every key: the options property that takes its default, or null where no options type has one (the key
    /// is used only by the hosts or the configuration itself). A key missing here fails the test, so a new key must
    /// be classified.
    /// </summary>
    private static readonly Dictionary<string, Func<object?>?> OptionsDefaults = new()
    {
        ["egress.enabled"] = null,
        ["egress.mode"] = null,
        ["host.enclaves"] = null,
        ["egress.destinations"] = null,
        ["egress.ports"] = null,
        ["egress.tls_server_name"] = () => Egress.Policy.EgressPolicy.Create(true, [], new Egress.Policy.AllowlistCache(new Egress.Policy.AllowlistCacheOptions())).TlsServerName,
        ["tunnel.enclave_endpoint"] = null,
        ["tunnel.host_endpoint"] = null,
        ["tunnel.status_timeout_ms"] = () => Same(new EgressProxyOptions { Tunnel = AnyTunnel }.StatusTimeout, new DnsForwarderOptions { Tunnel = AnyTunnel }.StatusTimeout),
        ["enclave.proxy_listen"] = () => new EgressProxyOptions { Tunnel = AnyTunnel }.Listen,
        ["enclave.dns_listen"] = () => new DnsForwarderOptions { Tunnel = AnyTunnel }.Listen,
        ["enclave.dns_query_timeout_ms"] = () => new DnsForwarderOptions { Tunnel = AnyTunnel }.QueryTimeout,
        ["enclave.netfilter"] = null,
        ["enclave.max_connections"] = () => new EgressProxyOptions { Tunnel = AnyTunnel }.MaxConnections,
        ["enclave.failover_attempts"] = () => new EgressProxyOptions { Tunnel = AnyTunnel }.FailoverAttempts,
        ["enclave.max_pending_connections"] = () => new EgressProxyOptions { Tunnel = AnyTunnel }.MaxPendingConnections,
        ["host.connect_timeout_ms"] = () => new TunnelGatewayOptions { Listen = AnyTunnel }.ConnectTimeout,
        ["host.header_timeout_ms"] = () => new TunnelGatewayOptions { Listen = AnyTunnel }.HeaderTimeout,
        ["host.dns_upstreams"] = () => new TunnelGatewayOptions { Listen = AnyTunnel }.DnsUpstreams,
        ["host.dns_timeout_ms"] = () => new TunnelGatewayOptions { Listen = AnyTunnel }.DnsTimeout,
        ["host.metrics_listen"] = null,
        ["host.audit_log"] = null,
        ["host.internal_networks"] = null,
        ["enclave.audit_log"] = null,
        ["enclave.report_denials"] = null,
        ["host.max_streams"] = () => new TunnelGatewayOptions { Listen = AnyTunnel }.MaxStreams,
        ["host.keepalive_idle_seconds"] = () => new TunnelGatewayOptions { Listen = AnyTunnel }.KeepAliveIdle,
        ["host.keepalive_interval_seconds"] = () => new TunnelGatewayOptions { Listen = AnyTunnel }.KeepAliveInterval,
        ["host.keepalive_probes"] = () => new TunnelGatewayOptions { Listen = AnyTunnel }.KeepAliveProbes,
        ["dns.ttl_floor_seconds"] = () => new AllowlistCacheOptions().TtlFloor,
        ["dns.grace_seconds"] = () => new AllowlistCacheOptions().Grace,
        ["dns.cache_max_entries"] = () => new AllowlistCacheOptions().MaxEntries,
        ["relay.idle_timeout_seconds"] = () => Same(RelayOptions.Default.IdleTimeout, new EgressProxyOptions { Tunnel = AnyTunnel }.Relay.IdleTimeout, new TunnelGatewayOptions { Listen = AnyTunnel }.Relay.IdleTimeout),
        ["relay.half_closed_timeout_seconds"] = () => Same(RelayOptions.Default.HalfClosedTimeout, new EgressProxyOptions { Tunnel = AnyTunnel }.Relay.HalfClosedTimeout, new TunnelGatewayOptions { Listen = AnyTunnel }.Relay.HalfClosedTimeout),
        ["relay.shutdown_drain_seconds"] = () => Same(new EgressProxyOptions { Tunnel = AnyTunnel }.ShutdownDrain, new TunnelGatewayOptions { Listen = AnyTunnel }.ShutdownDrain),
        ["relay.splice"] = () => RelayOptions.Default.UseSplice,
    };

    private static IEnumerable<TestCaseData> Keys() =>
        ConfigurationKeys.All.Select(key => new TestCaseData(key.Path).SetArgDisplayNames(key.Path));

    [Test]
    public void EveryKeyIsClassifiedForTheOptionsDefaults() =>
        Assert.That(OptionsDefaults.Keys, Is.EquivalentTo(ConfigurationKeys.All.Select(key => key.Path)));

    [TestCaseSource(nameof(Keys))]
    public void OptionsDefaultIsTheConfiguredDefault(string path)
    {
        if (OptionsDefaults[path] is not { } optionsDefault)
        {
            Assert.Pass($"{path} has no options property: only the hosts or the configuration use it.");
            return;
        }

        Assert.That(optionsDefault(), Is.EqualTo(ConfiguredDefault(path)), path);
    }

    [TestCaseSource(nameof(Keys))]
    public void KeyIsDocumentedWithItsTypeAndDefault(string path)
    {
        ConfigurationKey key = ConfigurationKeys.All.Single(candidate => candidate.Path == path);
        string docs = File.ReadAllText(Path.Combine(RepositoryFiles.Root(), "docs", "configuration.md"));
        Match section = Regex.Match(docs, $@"^### `\[{Regex.Escape(key.Section)}\]`.*?(?=^##)", RegexOptions.Multiline | RegexOptions.Singleline);
        Assert.That(section.Success, Is.True, $"docs/configuration.md has no ### `[{key.Section}]` section");

        string row = $"| `{key.Name}` | {key.TomlType} | {key.DocumentedDefault} |";
        Assert.That(section.Value, Does.Contain(row), $"the [{key.Section}] table of docs/configuration.md has no row starting {row}");
    }

    [Test]
    public void EveryDocumentedKeyIsInTheTable()
    {
        string docs = File.ReadAllText(Path.Combine(RepositoryFiles.Root(), "docs", "configuration.md"));
        var documented = new List<string>();
        foreach (Match section in Regex.Matches(docs, @"^### `\[(?<section>[a-z]+)\]`.*?(?=^##)", RegexOptions.Multiline | RegexOptions.Singleline))
        {
            foreach (Match row in Regex.Matches(section.Value, @"^\| `(?<name>[a-z_]+)` \|", RegexOptions.Multiline))
            {
                documented.Add($"{section.Groups["section"].Value}.{row.Groups["name"].Value}");
            }
        }

        Assert.That(documented, Is.EqualTo(ConfigurationKeys.All.Select(key => key.Path)));
    }

    [Test]
    public void RelayOptionsDefaultHasTheConfiguredIdleTimeout() =>
        Assert.That(RelayOptions.Default.IdleTimeout, Is.EqualTo(TimeSpan.FromHours(1)));

    // The value an empty file gives, as the section types expose it (relay.idle_timeout_seconds as the relay takes it).
    private static object? ConfiguredDefault(string path)
    {
        EgressConfiguration defaults = EgressConfiguration.Default;
        return path switch
        {
            "egress.tls_server_name" => defaults.Egress.TlsServerName,
            "tunnel.status_timeout_ms" => defaults.Tunnel.StatusTimeout,
            "enclave.proxy_listen" => defaults.Enclave.ProxyListen,
            "enclave.dns_listen" => defaults.Enclave.DnsListen,
            "enclave.dns_query_timeout_ms" => defaults.Enclave.DnsQueryTimeout,
            "enclave.max_connections" => defaults.Enclave.MaxConnections,
            "enclave.failover_attempts" => defaults.Enclave.FailoverAttempts,
            "enclave.max_pending_connections" => defaults.Enclave.MaxPendingConnections,
            "host.connect_timeout_ms" => defaults.Host.ConnectTimeout,
            "host.header_timeout_ms" => defaults.Host.HeaderTimeout,
            "host.dns_upstreams" => defaults.Host.DnsUpstreams,
            "host.dns_timeout_ms" => defaults.Host.DnsTimeout,
            "host.max_streams" => defaults.Host.MaxStreams,
            "host.keepalive_idle_seconds" => defaults.Host.KeepAliveIdle,
            "host.keepalive_interval_seconds" => defaults.Host.KeepAliveInterval,
            "host.keepalive_probes" => defaults.Host.KeepAliveProbes,
            "dns.ttl_floor_seconds" => defaults.Dns.TtlFloor,
            "dns.grace_seconds" => defaults.Dns.Grace,
            "dns.cache_max_entries" => defaults.Dns.CacheMaxEntries,
            "relay.idle_timeout_seconds" => defaults.CreateRelayOptions().IdleTimeout,
            "relay.half_closed_timeout_seconds" => defaults.CreateRelayOptions().HalfClosedTimeout,
            "relay.shutdown_drain_seconds" => defaults.Relay.ShutdownDrain,
            "relay.splice" => defaults.Relay.Splice,
            _ => throw new ArgumentOutOfRangeException(nameof(path), path, "no section property mapped"),
        };
    }

    // Several options types take the same key's default: they must agree with each other before the configuration.
    private static object? Same<T>(params T[] values)
    {
        Assert.That(values.Distinct().Count(), Is.EqualTo(1), $"options types disagree: {string.Join(", ", values)}");
        return values[0];
    }
}
