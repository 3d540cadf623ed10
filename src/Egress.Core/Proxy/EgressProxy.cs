using System.Net;
using System.Net.Sockets;
using Egress.Configuration;
using Egress.Connections;
using Egress.Diagnostics;
using Egress.Hosting;
using Egress.Interception;
using Egress.Policy;
using Egress.Relay;
using Egress.Sockets;
using Microsoft.Extensions.Logging;

namespace Egress.Proxy;

/// <summary>
/// The enclave side of egress: accepts the connections iptables redirected to it, reads each one's original
/// destination, decides it with the policy, opens a tunnel stream to the parent, and relays once the parent says
/// the destination is connected. Denied or failed connections are reset so the application fails fast.
/// </summary>
public sealed class EgressProxy : IAsyncDisposable
{
    private readonly EgressProxyOptions _options;
    private readonly ProxyConnectionHandler _handler;
    private readonly ILogger _logger;
    private readonly StartOnce _lifecycle = new(nameof(EgressProxy));
    private readonly List<ConnectionListener> _listeners = [];
    private readonly ConnectionAdmission _admission;
    private readonly ConnectionSetupLimit _setupLimit;
    private readonly LogRateLimit _setupLimitLines;
    private readonly LogRateLimit _setUpAsideLines;
    private readonly LogRateLimit _asideLines;

    /// <summary>Creates a proxy; call <see cref="Start"/> to listen.</summary>
    /// <param name="options">Listen addresses, tunnel endpoint and timeouts.</param>
    /// <param name="policy">The allowlist.</param>
    /// <param name="loggerFactory">Where decisions are logged (one line per connection).</param>
    /// <exception cref="ArgumentNullException">An argument is null, or a property of <paramref name="options"/> that must be set (Listen, Tunnel, Relay; the parameter name says which).</exception>
    /// <exception cref="ArgumentException"><paramref name="options"/> lists no address to listen on.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A setting of <paramref name="options"/> is outside its range (the
    /// parameter name says which): a value outside the range its <c>enclave.toml</c> key allows (the status timeout
    /// 1 … 2147483647 ms, the drain 0 … 3600 s, limits not negative, failover 0 … 16), or the relay's idle timeout as
    /// <see cref="RelayOptions.IdleTimeout"/> allows it.</exception>
    public EgressProxy(EgressProxyOptions options, EgressPolicy policy, ILoggerFactory loggerFactory)
        : this(options, policy, loggerFactory, originalDestination: null)
    {
    }

    /// <summary>Creates a proxy whose accepted connections' original destinations are read by
    /// <paramref name="originalDestination"/> (tests, which need neither root nor iptables; null: SO_ORIGINAL_DST).</summary>
    internal EgressProxy(
        EgressProxyOptions options, EgressPolicy policy, ILoggerFactory loggerFactory, Func<Socket, OriginalDestinationResult>? originalDestination)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        ArgumentNullException.ThrowIfNull(options.Tunnel, "options." + nameof(options.Tunnel)); // null! past `required`
        ArgumentNullException.ThrowIfNull(options.Listen, "options." + nameof(options.Listen));
        if (options.Listen.Count == 0)
        {
            throw new ArgumentException("the proxy needs at least one address to listen on (options.Listen is empty)", nameof(options));
        }

        const string Prefix = nameof(options) + "."; // the ranges are the file's keys'
        ConfigurationKeys.TunnelStatusTimeout.CheckOption(options.StatusTimeout, Prefix + nameof(options.StatusTimeout));
        ConfigurationKeys.RelayShutdownDrain.CheckOption(options.ShutdownDrain, Prefix + nameof(options.ShutdownDrain));
        ConfigurationKeys.EnclaveMaxConnections.CheckOption(options.MaxConnections, Prefix + nameof(options.MaxConnections));
        ConfigurationKeys.EnclaveMaxPendingConnections.CheckOption(options.MaxPendingConnections, Prefix + nameof(options.MaxPendingConnections));
        ConfigurationKeys.EnclaveFailoverAttempts.CheckOption(options.FailoverAttempts, Prefix + nameof(options.FailoverAttempts));
        RelayOptions.Validate(options.Relay, Prefix + nameof(options.Relay));

        _options = options;
        _logger = loggerFactory.CreateLogger("Egress.Proxy");
        _handler = new ProxyConnectionHandler(options, policy, _logger, originalDestination ?? OriginalDestination.Read);
        _admission = new ConnectionAdmission(options.MaxConnections, ConfigurationKeys.EnclaveMaxConnections.Path, "connection", DescriptorBudget.Process);
        _setupLimitLines = new LogRateLimit(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, _logger, 119);
        _asideLines = new LogRateLimit(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, _logger, 120);
        _setUpAsideLines = new LogRateLimit(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, _logger, 123);
        _setupLimit = new ConnectionSetupLimit(options.MaxPendingConnections, ConfigurationKeys.EnclaveMaxPendingConnections.Path, _admission.Limit)
        {
            Waiting = limit =>
            {
                if (_setupLimitLines.TryEnter(out long suppressed))
                {
                    ProxyLog.SetupLimitReached(_logger, limit.Pending, limit.LimitText(), suppressed + 1);
                }
            },
            TimeProvider = options.Relay.TimeProvider,
            MaxTurnWait = options.StatusTimeout,
            WaitingForTurn = (limit, destination) =>
            {
                if (_asideLines.TryEnter(out long asides))
                {
                    ProxyLog.WaitingAside(_logger, destination, limit.DestinationShare, limit.LimitText(), asides + 1);
                }
            },
            SettingUpAside = report =>
            {
                if (_setUpAsideLines.TryEnter(out long heldBack))
                {
                    ProxyLog.SettingUpAside(_logger, report.Given, report.DestinationsText(), report.SetUpAside, heldBack);
                }
            },
        };
    }

    /// <summary>Gets the addresses actually listened on (an IPv6 address is skipped where IPv6 is unavailable).</summary>
    public IReadOnlyList<EndPoint> LocalEndPoints { get; private set; } = [];

    /// <summary>Binds every listen address and starts accepting; once per instance.</summary>
    /// <exception cref="IOException">An address cannot be bound: the message names it and what the error means
    /// (e.g. <c>cannot listen on 127.0.0.1:4444: Address already in use (EADDRINUSE: ...)</c>), the
    /// <see cref="SocketException"/> is the inner exception; nothing stays bound then, and the start may be tried again.</exception>
    /// <exception cref="InvalidOperationException">This proxy was started before (and bound).</exception>
    /// <exception cref="ObjectDisposedException">This proxy was disposed.</exception>
    public void Start() => _lifecycle.Run(StartListening);

    /// <summary>The start itself, under <see cref="StartOnce.Run"/>.</summary>
    private void StartListening()
    {
        var sockets = new List<(IPEndPoint Address, Socket Socket)>();
        try
        {
            foreach (var address in _options.Listen)
            {
                Socket? socket;
                try
                {
                    socket = Bind(address, _logger);
                }
                catch (SocketException ex)
                {
                    // As the gateway and the hosted path say it (a library trial read "Address already in use" alone).
                    throw new IOException(Hosting.BindFailure.Describe(address.ToString(), ex), ex);
                }

                if (socket is not null)
                {
                    sockets.Add((address, socket));
                }
            }
        }
        catch
        {
            sockets.ForEach(bound => bound.Socket.Dispose());
            _lifecycle.Failed();
            throw;
        }

        var endPoints = new List<EndPoint>();
        string limits = $"{_admission.SettingText()}, {_setupLimit.SettingText()}";
        foreach ((IPEndPoint address, Socket socket) in sockets)
        {
            var listener = new ConnectionListener(socket, $"proxy {address}", (Func<Socket, ConnectionSetup, CancellationToken, Task>)_handler.HandleAsync, _logger)
            {
                Admission = _admission,
                RefusedMetrics = _options.Metrics,
                SetupLimit = _setupLimit,
                TimeProvider = _options.Relay.TimeProvider,
                HandlersOnAcceptThread = _options.HandlersOnAcceptThread,
            };
            _listeners.Add(listener);
            endPoints.Add(socket.LocalEndPoint!);
            listener.Start();
            ProxyLog.Listening(_logger, socket.LocalEndPoint!, _options.Tunnel.ToString(), limits);
        }

        LocalEndPoints = endPoints;
    }

    /// <summary>A listening socket on <paramref name="address"/>; null for an IPv6 address where IPv6 is unavailable
    /// (logged).</summary>
    /// <exception cref="SocketException">The address cannot be bound.</exception>
    internal static Socket? Bind(IPEndPoint address, ILogger logger)
    {
        Socket? socket = null;
        try
        {
            // Created inside the try: where IPv6 is compiled out, socket() itself fails with EAFNOSUPPORT.
            socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            if (address.AddressFamily == AddressFamily.InterNetworkV6)
            {
                socket.DualMode = false;
            }

            // Inherited by every accepted connection (Linux copies both flags to the accepted socket): one system call
            // each per listener instead of one per connection. Nagle off, as on the tunnel and destination sockets: a
            // relay forwards what it got at once.
            SocketUrgentData.KeepInLine(socket);
            socket.NoDelay = true;

            // SO_LINGER 0, inherited likewise: if this process ends without closing a connection itself (killed,
            // crashed), the kernel resets the application's connection instead of sending a FIN that would make a
            // download cut short look complete. A connection that ends is closed as it ended: the handler closes a
            // relayed one with FIN (SocketReset.CloseGracefully) and resets the others.
            socket.LingerState = new LingerOption(enable: true, seconds: 0);
            socket.Bind(address);
            socket.Listen(1024);
        }
        catch (SocketException ex) when (IPv6Unavailable.Explains(address, ex))
        {
            socket?.Dispose();
            ProxyLog.IPv6Unavailable(logger, address);
            return null;
        }
        catch
        {
            socket?.Dispose();
            throw;
        }

        return socket;
    }

    /// <summary>Stops accepting, ends the connections waiting for their destination's turn (they are not set up now),
    /// closes the idle pooled tunnel streams, lets live connections finish up to the drain deadline, then aborts them.</summary>
    /// <returns>A task that completes when every connection has ended.</returns>
    public Task StopAsync()
    {
        _setupLimit.StopWaits();
        Task stopped = Task.WhenAll(_listeners.Select(l => l.StopAsync(_options.ShutdownDrain)));
        _handler.Dispose();
        return stopped;
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        _lifecycle.Dispose();
        _setupLimit.StopWaits();
        foreach (var listener in _listeners)
        {
            await listener.DisposeAsync().ConfigureAwait(false);
        }

        _handler.Dispose();
    }
}
