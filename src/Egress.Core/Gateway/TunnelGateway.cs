using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Egress.Configuration;
using Egress.Connections;
using Egress.Diagnostics;
using Egress.Dns;
using Egress.Dns.Upstream;
using Egress.Hosting;
using Egress.Policy;
using Egress.Relay;
using Egress.Sockets;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;

namespace Egress.Gateway;

/// <summary>
/// The parent side of egress: accepts tunnel streams from the enclave, re-checks every destination with its own
/// policy (defence in depth: a compromised enclave proxy gains nothing), dials with a timeout, answers the status and
/// relays; serves DNS streams by forwarding each query to the upstream resolvers after its own name check. With
/// <c>[[host.enclaves]]</c> (configured through <c>AddEgressHost</c>), each stream is decided by the policy of the
/// entry its VSOCK peer's CID maps to (an exact CID before <c>"any"</c>); a stream from an unmapped CID is refused with
/// the reason; with two or more entries, no enclave CID holds more than three quarters of <c>host.max_streams</c>.
/// </summary>
public sealed class TunnelGateway : IAsyncDisposable
{
    private readonly TunnelGatewayOptions _options;
    private readonly TunnelStreamHandler _handler;
    private readonly EnclaveMap<TunnelStreamHandler> _enclaves;
    private readonly ILogger _logger;
    private readonly StartOnce _lifecycle = new(nameof(TunnelGateway));
    private readonly DnsUpstreamClient _dns;
    private readonly ParentAddresses _parentAddresses;
    private readonly IReadOnlyList<System.Net.IPNetwork> _internalNetworks;
    private ConnectionListener? _listener;
    private EnclaveStreamShare? _share;
    private LogRateLimit? _overShareLines;
    private int _answeringOverShare;

    /// <summary>Creates a gateway; call <see cref="Start"/> to listen.</summary>
    /// <param name="options">Tunnel endpoint and timeouts.</param>
    /// <param name="policy">The parent's own allowlist (same configuration, own DNS-learned cache).</param>
    /// <param name="loggerFactory">Where decisions are logged.</param>
    /// <exception cref="ArgumentNullException">An argument is null, or a property of <paramref name="options"/> that must be set (Listen, Relay, DnsUpstreams; the parameter name says which).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A setting of <paramref name="options"/> is outside its range (the
    /// parameter name says which): a value outside the range its <c>enclave.toml</c> key allows (docs/configuration.md:
    /// timeouts 1 … 2147483647 ms, <see cref="Timeout.InfiniteTimeSpan"/> also for the header and connect timeouts; the
    /// drain 0 … 3600 s; a stream limit not negative; keepalive idle 0 … 32767 s, interval 1 … 32767 s, probes
    /// 1 … 127), or the relay's idle timeout as <see cref="RelayOptions.IdleTimeout"/> allows it.</exception>
    /// <exception cref="IOException">This machine's own addresses (denied to the enclave: those of its interfaces and
    /// those its <c>local</c> and <c>anycast</c> routes deliver to it) cannot be read: reading them needs rtnetlink, which
    /// a sandbox without <c>AF_NETLINK</c> refuses; a gateway that knew none would deny none.</exception>
    public TunnelGateway(TunnelGatewayOptions options, EgressPolicy policy, ILoggerFactory loggerFactory)
        : this(options, policy, loggerFactory, connect: null)
    {
    }

    /// <summary>Creates a gateway whose destination sockets are connected by <paramref name="connect"/> and whose own
    /// addresses are read by <paramref name="parentAddresses"/> (tests, with no local routes; null: this machine's
    /// interfaces and local routes).</summary>
    internal TunnelGateway(
        TunnelGatewayOptions options, EgressPolicy policy, ILoggerFactory loggerFactory, DestinationDialer.Connect? connect,
        Func<IEnumerable<(string Interface, IPAddress Address)>>? parentAddresses = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        Validate(options);
        _options = options;
        _logger = loggerFactory.CreateLogger("Egress.Gateway");
        var upstreams = options.DnsUpstreams.Count > 0 ? options.DnsUpstreams : SystemDnsResolvers.Find();
        if (upstreams.Count == 0)
        {
            GatewayLog.NoDnsUpstreams(_logger);
        }

        _dns = new DnsUpstreamClient(upstreams, options.DnsTimeout, options.Relay.TimeProvider, _logger);
        _parentAddresses = new ParentAddresses(parentAddresses, options.Relay.TimeProvider, logger: _logger);
        _handler = new TunnelStreamHandler(options, policy, _dns, _logger, connect, _parentAddresses);
        _internalNetworks = policy.InternalNetworks; // a [[host.enclaves]] file's policy has the same (the host file's)
        _enclaves = options.Enclaves.Count == 0
            ? EnclaveMap<TunnelStreamHandler>.Single(_handler)
            : new EnclaveMap<TunnelStreamHandler>(options.Enclaves.Select(enclave => (enclave.Cid, new TunnelStreamHandler(
                options.ForEnclave(options.Metrics?.ForEnclave(enclave.Label, enclave.Policy.Cache), enclave), enclave.Policy, _dns, _logger, connect, _parentAddresses))));
        DnsUpstreams = upstreams;
    }

    /// <summary>Checks what would otherwise fail every stream at run time (a negative timer) or mean nothing.</summary>
    private static void Validate(TunnelGatewayOptions options)
    {
        // The ranges are the file's keys' (one description of each); Timeout.InfiniteTimeSpan, which the header and
        // connect timers accept, means no timeout.
        const string Prefix = nameof(options) + ".";
        ArgumentNullException.ThrowIfNull(options.Listen, Prefix + nameof(options.Listen)); // null! past `required`
        ArgumentNullException.ThrowIfNull(options.DnsUpstreams, Prefix + nameof(options.DnsUpstreams));
        ConfigurationKeys.HostHeaderTimeout.CheckOption(options.HeaderTimeout, Prefix + nameof(options.HeaderTimeout), infiniteAllowed: true);
        ConfigurationKeys.HostConnectTimeout.CheckOption(options.ConnectTimeout, Prefix + nameof(options.ConnectTimeout), infiniteAllowed: true);
        ConfigurationKeys.HostDnsTimeout.CheckOption(options.DnsTimeout, Prefix + nameof(options.DnsTimeout));
        ConfigurationKeys.RelayShutdownDrain.CheckOption(options.ShutdownDrain, Prefix + nameof(options.ShutdownDrain));
        RelayOptions.Validate(options.Relay, Prefix + nameof(options.Relay));
        ConfigurationKeys.HostMaxStreams.CheckOption(options.MaxStreams, Prefix + nameof(options.MaxStreams));
        ConfigurationKeys.HostKeepAliveIdle.CheckOption(options.KeepAliveIdle, Prefix + nameof(options.KeepAliveIdle));
        ConfigurationKeys.HostKeepAliveInterval.CheckOption(options.KeepAliveInterval, Prefix + nameof(options.KeepAliveInterval));
        ConfigurationKeys.HostKeepAliveProbes.CheckOption(options.KeepAliveProbes, Prefix + nameof(options.KeepAliveProbes));
    }

    /// <summary>Gets the resolvers DNS streams are answered from: the configured ones, else the system's.</summary>
    public IReadOnlyList<IPEndPoint> DnsUpstreams { get; }

    /// <summary>Gets the bound tunnel endpoint once started.</summary>
    public EndPoint? LocalEndPoint { get; private set; }

    /// <summary>Binds the tunnel endpoint and starts accepting streams; once per instance.</summary>
    /// <exception cref="IOException">The endpoint cannot be bound: the message names it and why (a socket error, e.g. a
    /// TCP port in use, an address not of this machine, a permission, with the <see cref="SocketException"/> as the
    /// inner exception; another process accepting on the <c>unix:</c> path; a missing directory; no VSOCK device).</exception>
    /// <exception cref="InvalidOperationException">This gateway was started before (and bound).</exception>
    /// <exception cref="ObjectDisposedException">This gateway was disposed.</exception>
    /// <remarks>A start that failed to bind leaves nothing bound and may be tried again.</remarks>
    public void Start() => _lifecycle.Run(StartListening);

    /// <summary>The start itself, under <see cref="StartOnce.Run"/>.</summary>
    private void StartListening()
    {
        Socket socket;
        try
        {
            socket = _options.Listen.Listen();
        }
        catch (SocketException ex)
        {
            // As documented and as the hosted path says it: which endpoint, and what to do (a library-consumer trial
            // got "Address already in use" alone from a TCP port in use).
            _lifecycle.Failed();
            throw new IOException(Hosting.BindFailure.Describe(_options.Listen.ToString(), ex), ex);
        }
        catch
        {
            _lifecycle.Failed();
            throw;
        }

        LocalEndPoint = socket.LocalEndPoint;
        var admission = new ConnectionAdmission(_options.MaxStreams, ConfigurationKeys.HostMaxStreams.Path, "stream", DescriptorBudget.Process);
        _share = _options.Enclaves.Count >= 2 ? new EnclaveStreamShare(admission.Limit, admission.LimitText()) : null;
        var reserve = new StreamReserve(admission, _share, _options.PeerCid, () => Volatile.Read(ref _answeringOverShare));
        foreach (TunnelStreamHandler handler in _enclaves.Values)
        {
            handler.Reserve = reserve;
        }

        ConnectionListener? listener = null;
        listener = new ConnectionListener(
            socket, $"gateway {_options.Listen}", (stream, aborted) => HandleAsync(stream, listener!, aborted), _logger)
        {
            Admission = admission,
            Refused = _handler.HandleRefusedAsync,
            TimeProvider = _options.Relay.TimeProvider,
            HandlersOnAcceptThread = _options.HandlersOnAcceptThread,
        };
        _listener = listener;
        _listener.Start();
        GatewayLog.Listening(
            _logger,
            _options.Listen.ToString(),
            string.Create(CultureInfo.InvariantCulture, $"{admission.SettingText()}, DNS streams at most {DnsStreamLimits.MaxStreams(admission.Limit)} per enclave"));
        GatewayLog.ParentAddresses(_logger, _parentAddresses.ToString());
        if (_internalNetworks.Count > 0)
        {
            GatewayLog.InternalNetworks(_logger, string.Join(", ", _internalNetworks));
        }
        foreach (GatewayEnclave enclave in _options.Enclaves)
        {
            GatewayLog.EnclavePolicy(_logger, enclave.Cid is null ? "any CID" : $"CID {enclave.Label}", enclave.Description);
        }

        if (_options.Listen.Transport == TunnelTransport.Tcp && LocalEndPoint is IPEndPoint { Address: var address } && !IPAddress.IsLoopback(address))
        {
            // The tunnel has no authentication: whoever reaches this port can use the parent as this policy's proxy.
            GatewayLog.UnauthenticatedTcpTunnel(_logger, _options.Listen.ToString());
        }

        if (DnsUpstreams.Count > 0)
        {
            GatewayLog.DnsUpstreams(_logger, string.Join(", ", DnsUpstreams));
        }
    }

    /// <summary>Serves a stream with the handler of its peer's entry, or refuses it with the reason: its CID is not
    /// mapped, or already holds its share of the streams.</summary>
    private Task HandleAsync(Socket stream, ConnectionListener listener, CancellationToken aborted)
    {
        uint? cid = _enclaves.IsMapped ? _options.PeerCid(stream) : null;
        if (!_enclaves.TryResolve(cid, out TunnelStreamHandler? handler, out string? refusal))
        {
            return _handler.HandlePeerRefusedAsync(stream, refusal, aborted);
        }

        if (_share is null || cid is not { } peer)
        {
            return handler.HandleAsync(stream, listener, aborted);
        }

        if (_share.TryTake(peer, out string? beyondShare))
        {
            return HandleWithinShareAsync(handler, stream, listener, peer, aborted);
        }

        // Answered (its request read, then Failure with the reason) while it holds a slot of host.max_streams: at most
        // ConnectionListener.MaxAnswering at once, as the listener answers its own refusals, and the rest reset at once,
        // so that an enclave opening bare streams beyond its share cannot fill the others' quarter with refusals
        // waiting for requests that never come.
        if (Interlocked.Increment(ref _answeringOverShare) <= ConnectionListener.MaxAnswering)
        {
            return AnswerOverShareAsync(handler, stream, beyondShare, aborted);
        }

        Interlocked.Decrement(ref _answeringOverShare);
        _overShareLines ??= new LogRateLimit(_options.Relay.TimeProvider, LogRateLimit.DefaultInterval, _logger, 261);
        if (_overShareLines.TryEnter(out long suppressed))
        {
            GatewayLog.OverShareReset(_logger, beyondShare, ConnectionListener.MaxAnswering, suppressed);
        }

        SocketReset.Reset(stream);
        return Task.CompletedTask;
    }

    private async Task AnswerOverShareAsync(TunnelStreamHandler handler, Socket stream, string reason, CancellationToken aborted)
    {
        try
        {
            await handler.HandleRefusedAsync(stream, reason, aborted).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _answeringOverShare);
        }
    }

    private async Task HandleWithinShareAsync(TunnelStreamHandler handler, Socket stream, ConnectionListener listener, uint cid, CancellationToken aborted)
    {
        try
        {
            await handler.HandleAsync(stream, listener, aborted).ConfigureAwait(false);
        }
        finally
        {
            _share!.Return(cid);
        }
    }

    /// <summary>Gets the streams per enclave CID when several are served (tests); null otherwise.</summary>
    internal EnclaveStreamShare? StreamShare => _share;

    /// <summary>Gets how many streams hold a slot of <c>host.max_streams</c> now (tests).</summary>
    internal int StreamsAdmitted => _listener?.Admission?.Admitted ?? 0;

    /// <summary>Stops accepting, lets live streams finish up to the drain deadline, then aborts them.</summary>
    /// <returns>A task that completes when every stream has ended.</returns>
    public Task StopAsync() => _listener?.StopAsync(_options.ShutdownDrain) ?? Task.CompletedTask;

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        _lifecycle.Dispose();
        if (_listener is not null)
        {
            await _listener.DisposeAsync().ConfigureAwait(false);
        }

        _dns.Dispose();
        _parentAddresses.Dispose();
    }
}
