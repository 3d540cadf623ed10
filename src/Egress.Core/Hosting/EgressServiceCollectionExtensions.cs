using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using Egress.Audit;
using Egress.Configuration;
using Egress.Denials;
using Egress.Diagnostics;
using Egress.Dns.Forwarder;
using Egress.Gateway;
using Egress.Policy;
using Egress.Proxy;
using Egress.Tunnel;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Egress.Hosting;

/// <summary>
/// Registers either side of Egress, composed from an <c>enclave.toml</c>, in a Generic Host's services: what
/// egress-enclave and egress-host themselves run. Each listener is a hosted service: it binds when the host starts (a
/// failure to bind ends the start with an <see cref="IOException"/> naming the address) and drains when it stops
/// (<c>[relay] shutdown_drain_seconds</c>; give the host a <c>HostOptions.ShutdownTimeout</c> at least that long).
/// Logging comes from the container's <see cref="ILoggerFactory"/> (none when it has none); metrics (meter <c>Egress</c>) are recorded when an
/// <see cref="IMeterFactory"/> is registered (<c>services.AddMetrics()</c>).
/// </summary>
public static class EgressServiceCollectionExtensions
{
    /// <summary>
    /// Adds the enclave side: the transparent TCP proxy on <c>[enclave] proxy_listen</c> and the DNS forwarder on
    /// <c>[enclave] dns_listen</c>, sharing one <see cref="EgressPolicy"/> and its cache of DNS-learned addresses (both
    /// registered as singletons, unless the container already has them, for a consumer that wants to check or teach
    /// the same policy; each side added keeps its own). Connections reach the
    /// proxy through the redirect rules (<c>egress-enclave rules --apply</c>). Unless <c>[enclave] report_denials</c> is
    /// <c>"off"</c>, what the two deny is reported to the parent every 10 s and at a stop (docs/tunnel-protocol.md,
    /// "Denial reports").
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="configuration">The configuration (<see cref="EgressConfiguration.Load"/>).</param>
    /// <param name="tunnel">Where to open tunnel streams, overriding <c>[tunnel] enclave_endpoint</c>; null to use it.</param>
    /// <returns><paramref name="services"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="services"/> or <paramref name="configuration"/> is null.</exception>
    /// <exception cref="ConfigurationException">A destination entry or the tunnel endpoint in the file is invalid; the message gives its <c>file:line:col</c>.</exception>
    /// <exception cref="InvalidOperationException">The enclave side was added to <paramref name="services"/> already (one per container).</exception>
    public static IServiceCollection AddEgressEnclave(this IServiceCollection services, EgressConfiguration configuration, TunnelEndpoint? tunnel = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        ThrowIfAddedAlready<EnclaveSideAdded>(services, nameof(AddEgressEnclave));
        tunnel ??= configuration.GetTunnelEndpoint(TunnelSide.Enclave);
        var (policy, metrics) = AddPolicy(services, configuration, TunnelSide.Enclave);
        var relay = configuration.CreateRelayOptions();
        var audit = AddAudit(services, configuration, ConfigurationKeys.EnclaveAuditLog.Path, configuration.Enclave.AuditLog);
        var denials = configuration.Enclave.ReportDenials == DenialDetail.Off ? null : new DenialTally(relay.TimeProvider, configuration.Enclave.ReportDenials);
        if (denials is not null)
        {
            // Registered before the proxy and the forwarder, so stopped after them: the last report has their last denials.
            services.AddSingleton<IHostedService>(provider =>
            {
                var reporter = new DenialReporter(
                    denials, tunnel, configuration.Tunnel.StatusTimeout, relay.TimeProvider,
                    (provider.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance).CreateLogger("Egress.Denials"),
                    configuration.GetPolicyDigest());
                return new ListenerHostedService(reporter.Start, reporter.StopAsync);
            });
        }

        services.AddSingleton(provider => new EgressProxy(
            new EgressProxyOptions
            {
                Listen = configuration.Enclave.ProxyListen,
                Tunnel = tunnel,
                StatusTimeout = configuration.Tunnel.StatusTimeout,
                Relay = relay,
                ShutdownDrain = configuration.Relay.ShutdownDrain,
                MaxConnections = configuration.Enclave.MaxConnections,
                MaxPendingConnections = configuration.Enclave.MaxPendingConnections,
                FailoverAttempts = configuration.Enclave.FailoverAttempts,
                Metrics = metrics.Get(provider),
                Audit = audit.Get(provider),
                Denials = denials,
            },
            policy,
            provider.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance));
        services.AddSingleton(provider => new DnsForwarder(
            new DnsForwarderOptions
            {
                Listen = configuration.Enclave.DnsListen,
                Tunnel = tunnel,
                QueryTimeout = configuration.Enclave.DnsQueryTimeout,
                StatusTimeout = configuration.Tunnel.StatusTimeout,
                Metrics = metrics.Get(provider),
                Denials = denials,
            },
            policy,
            provider.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance));
        services.AddSingleton<IHostedService>(provider =>
        {
            var proxy = provider.GetRequiredService<EgressProxy>();
            return new ListenerHostedService(proxy.Start, proxy.StopAsync);
        });
        services.AddSingleton<IHostedService>(provider =>
        {
            var dns = provider.GetRequiredService<DnsForwarder>();
            return new ListenerHostedService(dns.Start, dns.StopAsync);
        });
        return services;
    }

    /// <summary>
    /// Adds the parent side: the tunnel gateway on <c>[tunnel] host_endpoint</c>, which re-checks every destination
    /// against the same policy, dials, relays and answers DNS streams from the upstream resolvers. The
    /// <see cref="EgressPolicy"/> and its cache are registered as singletons too, unless the container already has them
    /// (the side keeps its own either way: both sides can run in one process, as samples/EmbeddedEnclave does by hand).
    /// <c>[host] metrics_listen</c> is not served here: the package has no HTTP server. The side records its metrics on the
    /// meter <c>Egress</c> through the container's <see cref="System.Diagnostics.Metrics.IMeterFactory"/>; export them
    /// with the exporter of your choice (egress-host serves that key with its own Prometheus endpoint).
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="configuration">The configuration (<see cref="EgressConfiguration.Load"/>).</param>
    /// <param name="listen">Where to accept tunnel streams, overriding <c>[tunnel] host_endpoint</c>; null to use it.</param>
    /// <param name="dnsUpstreams">Resolvers to forward DNS to, overriding <c>[host] dns_upstreams</c>; null or empty to
    /// use it (and, when that is empty too, the parent's own resolvers).</param>
    /// <returns><paramref name="services"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="services"/> or <paramref name="configuration"/> is null.</exception>
    /// <exception cref="ConfigurationException">A destination entry or the tunnel endpoint in the file is invalid; the message gives its <c>file:line:col</c>.</exception>
    /// <exception cref="InvalidOperationException">The host side was added to <paramref name="services"/> already (one per container).</exception>
    public static IServiceCollection AddEgressHost(
        this IServiceCollection services, EgressConfiguration configuration, TunnelEndpoint? listen = null, IReadOnlyList<IPEndPoint>? dnsUpstreams = null) =>
        AddEgressHost(services, configuration, listen, dnsUpstreams, warning: null);

    /// <summary>
    /// <see cref="AddEgressHost(IServiceCollection, EgressConfiguration, TunnelEndpoint?, IReadOnlyList{IPEndPoint}?)"/>,
    /// handing each warning of a <c>[[host.enclaves]]</c> file (<see cref="ConfiguredComponents.GetWarnings"/>, located in
    /// that file) to <paramref name="warning"/> as the file is read, once per file however many entries map it:
    /// egress-host writes them where it writes the warnings of its own file.
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="configuration">The configuration.</param>
    /// <param name="listen">Where to accept tunnel streams; null for <c>[tunnel] host_endpoint</c>.</param>
    /// <param name="dnsUpstreams">Resolvers to forward DNS to; null or empty for <c>[host] dns_upstreams</c>.</param>
    /// <param name="warning">Gets each warning line of the mapped files; null to drop them.</param>
    /// <returns><paramref name="services"/>.</returns>
    internal static IServiceCollection AddEgressHost(
        this IServiceCollection services, EgressConfiguration configuration, TunnelEndpoint? listen, IReadOnlyList<IPEndPoint>? dnsUpstreams, Action<string>? warning)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        ThrowIfAddedAlready<HostSideAdded>(services, nameof(AddEgressHost));
        listen ??= configuration.GetTunnelEndpoint(TunnelSide.Host);
        var (policy, metrics) = AddPolicy(services, configuration, TunnelSide.Host);
        var host = configuration.Host;
        var relay = configuration.CreateRelayOptions();
        GatewayEnclave[] enclaves = LoadHostEnclaves(configuration, listen, warning);
        PolicyDigest digest = configuration.GetPolicyDigest();
        var audit = AddAudit(services, configuration, ConfigurationKeys.HostAuditLog.Path, host.AuditLog);
        services.AddSingleton(provider => new TunnelGateway(
            new TunnelGatewayOptions
            {
                Listen = listen,
                HeaderTimeout = host.HeaderTimeout,
                ConnectTimeout = host.ConnectTimeout,
                Relay = relay,
                ShutdownDrain = configuration.Relay.ShutdownDrain,
                DnsUpstreams = dnsUpstreams is { Count: > 0 } ? dnsUpstreams : host.DnsUpstreams,
                DnsTimeout = host.DnsTimeout,
                MaxStreams = host.MaxStreams,
                KeepAliveIdle = host.KeepAliveIdle,
                KeepAliveInterval = host.KeepAliveInterval,
                KeepAliveProbes = host.KeepAliveProbes,
                Metrics = metrics.Get(provider),
                Audit = audit.Get(provider),
                Enclaves = enclaves,
            }.WithPolicy(digest, configuration.SourceName),
            policy,
            provider.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance));
        services.AddSingleton<IHostedService>(provider =>
        {
            var gateway = provider.GetRequiredService<TunnelGateway>();
            return new ListenerHostedService(gateway.Start, gateway.StopAsync);
        });
        return services;
    }

    /// <summary>
    /// The policy of each <c>[[host.enclaves]]</c> entry, from its file's <c>[egress]</c> and <c>[dns]</c> (its other
    /// sections are not used), each with its own allowlist cache; read now, so that a missing or bad file fails
    /// registration with its location. Each file's warnings go to <paramref name="warning"/> once.
    /// </summary>
    /// <exception cref="ConfigurationException">A mapped file cannot be read (located at its <c>config</c> value) or is
    /// invalid (located in it); or the tunnel endpoint gives no peer CID (<c>unix:</c>, <c>tcp://</c>) and no entry is
    /// <c>cid = "any"</c>, so every stream would be refused.</exception>
    internal static GatewayEnclave[] LoadHostEnclaves(EgressConfiguration configuration, TunnelEndpoint listen, Action<string>? warning)
    {
        var mappings = configuration.Host.Enclaves;
        if (mappings.Count > 0 && listen.Transport != TunnelTransport.Vsock && !mappings.Any(mapping => mapping.Cid is null))
        {
            throw new ConfigurationException(
                mappings[0].Location,
                ConfigurationKeys.HostEnclaves.Path,
                $"the tunnel endpoint {listen} gives no peer CID (only vsock: does), so no stream could match an entry by CID and every one would be refused; add an entry with cid = \"any\" or listen on vsock:");
        }

        return LoadEnclaves(mappings, configuration.Host.InternalNetworks, warning);
    }

    // Each mapped file's [egress] and [dns], with the internal networks of egress-host's own file (a mapped file's other
    // sections are not used).
    private static GatewayEnclave[] LoadEnclaves(IReadOnlyList<EnclaveMapping> mappings, IReadOnlyList<System.Net.IPNetwork> internalNetworks, Action<string>? warning)
    {
        var warned = new HashSet<string>(StringComparer.Ordinal);
        return [.. mappings.Select(mapping =>
        {
            EgressConfiguration file;
            try
            {
                file = EgressConfiguration.Load(mapping.ConfigPath);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new ConfigurationException(mapping.ConfigLocation, ConfigurationKeys.HostEnclaves.Path + ".config", $"cannot read \"{mapping.ConfigPath}\": {ex.Message}");
            }

            PolicyDigest digest = file.GetPolicyDigest();
            if (warning is not null && warned.Add(Path.GetFullPath(mapping.ConfigPath)))
            {
                foreach (string line in file.GetWarningsWith(internalNetworks))
                {
                    warning(line);
                }
            }

            string egress = !digest.EgressEnabled ? "disabled" : digest.Mode == EgressMode.Report ? "enabled, report mode" : "enabled";
            return new GatewayEnclave(
                mapping.Cid,
                file.CreatePolicyWith(file.CreateCache(), internalNetworks),
                $"policy {digest} (egress {egress}, {digest.DestinationCount} destination{(digest.DestinationCount == 1 ? string.Empty : "s")}) from {mapping.ConfigPath}",
                digest,
                mapping.ConfigPath);
        })];
    }

    /// <summary>A side added twice would bind its listeners twice, and its second start failed with "this TunnelGateway
    /// was started already" (a library user's trial), naming neither the call nor the cause. A marker registered by the
    /// side, not its component's type: a consumer may register an EgressProxy or TunnelGateway of its own.</summary>
    private static void ThrowIfAddedAlready<TMarker>(IServiceCollection services, string method)
        where TMarker : class, new()
    {
        foreach (ServiceDescriptor descriptor in services)
        {
            if (descriptor.ServiceType == typeof(TMarker))
            {
                throw new InvalidOperationException(
                    $"{method} was called already on these services: each side is added to a container once (both sides may share one)");
            }
        }

        services.AddSingleton(new TMarker());
    }

    /// <summary>Marks a container to which <see cref="AddEgressEnclave"/> added the enclave side.</summary>
    private sealed class EnclaveSideAdded;

    /// <summary>Marks a container to which AddEgressHost added the host side.</summary>
    private sealed class HostSideAdded;

    /// <summary>
    /// The side's policy (checked now, so a bad entry fails registration with its location) and its metrics, which the
    /// side's components take directly: both sides can be added to one container without sharing either. The first
    /// side added also registers its policy and cache as singletons, for consumers.
    /// </summary>
    private static (EgressPolicy Policy, SideMetrics Metrics) AddPolicy(IServiceCollection services, EgressConfiguration configuration, TunnelSide side)
    {
        var cache = configuration.CreateCache();
        var policy = configuration.CreatePolicy(cache);
        services.TryAddSingleton(cache);
        services.TryAddSingleton(policy);
        return (policy, new SideMetrics(side, cache));
    }

    /// <summary>The side's one metrics instance, created on first use; none without an <see cref="IMeterFactory"/>.</summary>
    /// <summary>
    /// The side's audit log (<c>audit_log</c>), opened when the side's listener is created (a file that cannot be opened
    /// fails the start, naming the key) and closed by a hosted service registered before the listeners, so that it stops
    /// after them and the records of the connections they drain are written.
    /// </summary>
    private static SideAudit AddAudit(IServiceCollection services, EgressConfiguration configuration, string keyPath, string? target)
    {
        var audit = new SideAudit(configuration, keyPath, target);
        if (target is not null)
        {
            services.AddSingleton<IHostedService>(audit);
        }

        return audit;
    }

    private sealed class SideAudit(EgressConfiguration configuration, string keyPath, string? target) : IHostedService
    {
        private readonly Lock _lock = new();
        private bool _opened;
        private AuditLog? _log;

        /// <exception cref="ConfigurationException">The file cannot be opened; the message names the key and the cause.</exception>
        public AuditLog? Get(IServiceProvider provider)
        {
            lock (_lock)
            {
                if (!_opened && target is not null)
                {
                    _opened = true;
                    ILogger logger = (provider.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance).CreateLogger("Egress.Audit");
                    try
                    {
                        _log = AuditLog.Open(target, logger, TimeProvider.System);
                    }
                    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                    {
                        throw configuration.CreateException(keyPath, $"cannot open \"{target}\" for the audit log: {ex.Message}");
                    }

                    AuditLogLines.Opened(logger, target);
                }

                return _log;
            }
        }

        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public async Task StopAsync(CancellationToken cancellationToken)
        {
            AuditLog? log;
            lock (_lock)
            {
                log = _log;
                _log = null;
            }

            if (log is not null)
            {
                await log.DisposeAsync().AsTask().WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private sealed class SideMetrics(TunnelSide side, AllowlistCache cache)
    {
        private readonly Lock _lock = new();
        private bool _created;
        private EgressMetrics? _metrics;

        public EgressMetrics? Get(IServiceProvider provider)
        {
            lock (_lock)
            {
                if (!_created)
                {
                    _metrics = provider.GetService<IMeterFactory>() is { } meters ? new EgressMetrics(meters, side, cache) : null;
                    _created = true;
                }

                return _metrics;
            }
        }
    }
}
