using System.Net;
using System.Net.Sockets;
using Egress.Configuration;
using Egress.Connections;
using Egress.Hosting;
using Egress.Policy;
using Egress.Sockets;
using Microsoft.Extensions.Logging;
using Pipelines.Sockets.Unofficial;

namespace Egress.Dns.Forwarder;

/// <summary>
/// The enclave's DNS forwarder: serves UDP and TCP on the configured addresses, refuses names outside the
/// allowlist at once (nothing is forwarded), forwards allowed queries to the parent over a few long-lived tunnel
/// DNS streams, returns the answers unchanged, and teaches the policy the answered addresses so the proxy allows
/// connections to them. See docs/dns.md.
/// </summary>
public sealed class DnsForwarder : IAsyncDisposable
{
    private static readonly TimeSpan CloseDeadline = TimeSpan.FromSeconds(5);

    private readonly DnsForwarderOptions _options;
    private readonly ILogger _logger;
    private readonly StartOnce _lifecycle = new(nameof(DnsForwarder));
    private readonly CancellationTokenSource _stopping = new();
    private readonly DnsTunnelPool _pool;
    private readonly DnsQueryHandler _handler;
    private readonly DnsStreamOptions _tcpStreams;
    private readonly List<Socket> _udpSockets = [];
    private readonly List<Task> _udpLoops = [];
    private readonly List<ConnectionListener> _tcpListeners = [];
    private readonly ConnectionAdmission _tcpAdmission;
    private bool _stopped;

    /// <summary>
    /// The most DNS-over-TCP connections served at once, over all listen addresses. Stub resolvers use TCP only to
    /// retry a truncated answer, one connection at a time; without a bound, thousands of slow clients held every
    /// descriptor of egress-enclave until it died (stress suite scenario 5). Each is also charged to the process's
    /// descriptor budget, as the proxy's connections are; one beyond is reset at once with a logged reason (the app
    /// still has UDP).
    /// </summary>
    internal const int MaxTcpConnections = 256;

    /// <summary>Creates a forwarder; call <see cref="Start"/> to listen.</summary>
    /// <param name="options">Listen addresses, tunnel endpoint and timeouts.</param>
    /// <param name="policy">The allowlist; answered addresses are learned into it.</param>
    /// <param name="loggerFactory">Where refusals, failures and rebinding refusals are logged.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="options"/> lists no address to listen on.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="DnsForwarderOptions.StreamCount"/> is not 1 … 16, or
    /// <see cref="DnsForwarderOptions.QueryTimeout"/> or <see cref="DnsForwarderOptions.StatusTimeout"/> is not 1 ms …
    /// <see cref="int.MaxValue"/> ms (the range of <c>enclave.dns_query_timeout_ms</c> and <c>tunnel.status_timeout_ms</c>),
    /// or <see cref="DnsForwarderOptions.TcpIdleTimeout"/> is neither that nor <see cref="Timeout.InfiniteTimeSpan"/>.</exception>
    public DnsForwarder(DnsForwarderOptions options, EgressPolicy policy, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        ArgumentNullException.ThrowIfNull(options.Tunnel, nameof(options) + "." + nameof(options.Tunnel));
        if (options.Listen.Count == 0)
        {
            throw new ArgumentException("the forwarder needs at least one address to listen on (options.Listen is empty)", nameof(options));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(options.StreamCount, 1, nameof(options) + "." + nameof(options.StreamCount));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.StreamCount, 16, nameof(options) + "." + nameof(options.StreamCount));
        ConfigurationKeys.EnclaveDnsQueryTimeout.CheckOption(options.QueryTimeout, nameof(options) + "." + nameof(options.QueryTimeout));
        ConfigurationKeys.TunnelStatusTimeout.CheckOption(options.StatusTimeout, nameof(options) + "." + nameof(options.StatusTimeout));
        if (options.TcpIdleTimeout != Timeout.InfiniteTimeSpan
            && (options.TcpIdleTimeout < TimeSpan.FromMilliseconds(1) || options.TcpIdleTimeout > TimeSpan.FromMilliseconds(int.MaxValue)))
        {
            // Unchecked before: zero closed every DNS-over-TCP connection at once, a negative one threw inside each.
            throw new ArgumentOutOfRangeException(
                nameof(options) + "." + nameof(options.TcpIdleTimeout), options.TcpIdleTimeout, "must be 1 ms to 2147483647 ms, or Timeout.InfiniteTimeSpan for no limit");
        }

        _options = options;
        _logger = loggerFactory.CreateLogger("Egress.Dns");
        _pool = new DnsTunnelPool(options, _logger, _stopping.Token);
        _handler = new DnsQueryHandler(
            policy, _pool, new DnsQueryAdmission(DnsQueryAdmission.PerStream * options.StreamCount, DnsQueryAdmission.PerClient), options.Metrics, _logger, options.TimeProvider, options.Denials);
        _tcpAdmission = new ConnectionAdmission(MaxTcpConnections, "fixed limit of DNS-over-TCP connections", "DNS-over-TCP connection", DescriptorBudget.Process);
        _tcpStreams = new DnsStreamOptions
        {
            MaxInFlight = DnsQueryAdmission.PerClient,
            IdleTimeout = options.TcpIdleTimeout,
            TimeProvider = options.TimeProvider,
            Metrics = options.Metrics,
        };
    }

    /// <summary>Gets the addresses actually served (UDP and TCP share each one), with ephemeral ports resolved.</summary>
    public IReadOnlyList<IPEndPoint> LocalEndPoints { get; private set; } = [];

    /// <summary>Binds every listen address for UDP and TCP and starts serving; once per instance. An IPv6 address where
    /// IPv6 is unavailable (compiled out, or disabled so that lo has no <c>::1</c>) is skipped with a warning (event
    /// 327), as the proxy skips its own; <see cref="LocalEndPoints"/> lists what was bound.</summary>
    /// <exception cref="IOException">An address cannot be bound (in use, e.g. by another resolver, or port 53 without
    /// the privilege): the message names that address and what the error means, the <see cref="SocketException"/> is
    /// the inner exception; nothing stays bound then, and the start may be tried again.</exception>
    /// <exception cref="InvalidOperationException">This forwarder was started before (and bound).</exception>
    /// <exception cref="ObjectDisposedException">This forwarder was disposed.</exception>
    public void Start() => _lifecycle.Run(StartListening);

    /// <summary>The start itself, under <see cref="StartOnce.Run"/>.</summary>
    private void StartListening()
    {
        var bound = new List<IPEndPoint>();
        var sockets = new List<Socket>();
        try
        {
            foreach (IPEndPoint address in _options.Listen)
            {
                Socket udp, tcp;
                try
                {
                    (udp, tcp) = BindPair(address);
                }
                catch (SocketException ex) when (IPv6Unavailable.Explains(address, ex))
                {
                    // As the proxy does: [::1] in the default dns_listen, in an enclave whose IPv6 is disabled (the rules
                    // redirect no IPv6 there either). A trial: the forwarder failed the whole start of egress-enclave.
                    DnsLog.IPv6Unavailable(_logger, address);
                    continue;
                }
                catch (SocketException ex)
                {
                    // The address that failed, not every one of dns_listen (a trial), and what the error means.
                    throw new IOException(Hosting.BindFailure.DescribeDns(address, ex), ex);
                }

                sockets.Add(udp);
                sockets.Add(tcp);
                bound.Add((IPEndPoint)udp.LocalEndPoint!);
            }
        }
        catch
        {
            sockets.ForEach(s => s.Dispose());
            _lifecycle.Failed();
            throw;
        }

        for (int i = 0; i < sockets.Count; i += 2)
        {
            Socket udp = sockets[i];
            _udpSockets.Add(udp);
            _udpLoops.Add(new DnsUdpListener(udp, _handler, _options.Metrics, _logger, _options.TimeProvider).Start(_stopping.Token));
            var listener = new ConnectionListener(sockets[i + 1], $"dns {bound[i / 2]}", ServeTcpAsync, _logger)
            {
                Admission = _tcpAdmission,
                TimeProvider = _options.TimeProvider,
            };
            _tcpListeners.Add(listener);
            listener.Start();
            DnsLog.Listening(_logger, bound[i / 2], _options.Tunnel.ToString());
        }

        LocalEndPoints = bound;
    }

    /// <summary>Stops serving: closes the sockets, answers nothing more, closes the tunnel streams.</summary>
    /// <returns>A task that completes when the listeners have stopped.</returns>
    public async Task StopAsync()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        await _stopping.CancelAsync().ConfigureAwait(false);
        _udpSockets.ForEach(s => s.Dispose());
        await Task.WhenAll(_udpLoops).ConfigureAwait(false);
        await Task.WhenAll(_tcpListeners.Select(l => l.StopAsync(TimeSpan.Zero))).ConfigureAwait(false);
        _pool.Close();
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        _lifecycle.Dispose();
        await StopAsync().ConfigureAwait(false);
        foreach (ConnectionListener listener in _tcpListeners)
        {
            await listener.DisposeAsync().ConfigureAwait(false);
        }

        _pool.Dispose();
        _stopping.Dispose();
    }

    /// <summary>
    /// Binds UDP and TCP on the same address and port. With port 0 the kernel picks the UDP port, and that number
    /// may already be taken for TCP by someone else: then another UDP port is tried (a few times), instead of failing.
    /// </summary>
    private static (Socket Udp, Socket Tcp) BindPair(IPEndPoint address)
    {
        const int EphemeralAttempts = 16;
        for (int attempt = 1; ; attempt++)
        {
            Socket udp = Bind(address, SocketType.Dgram, ProtocolType.Udp);
            Socket? tcp = null;
            try
            {
                tcp = Bind((IPEndPoint)udp.LocalEndPoint!, SocketType.Stream, ProtocolType.Tcp);
                tcp.Listen(512);
                return (udp, tcp);
            }
            catch (SocketException ex) when (address.Port == 0 && attempt < EphemeralAttempts
                && ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
            {
                tcp?.Dispose();
                udp.Dispose();
            }
            catch
            {
                tcp?.Dispose();
                udp.Dispose();
                throw;
            }
        }
    }

    private static Socket Bind(IPEndPoint address, SocketType type, ProtocolType protocol)
    {
        var socket = new Socket(address.AddressFamily, type, protocol);
        try
        {
            if (address.AddressFamily == AddressFamily.InterNetworkV6)
            {
                socket.DualMode = false;
            }

            if (type == SocketType.Stream)
            {
                SocketAddressReuse.Set(socket); // not SO_REUSEPORT: a second forwarder on the address is an error
            }

            socket.Bind(address);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private async Task ServeTcpAsync(Socket socket, CancellationToken aborted)
    {
        SocketConnection connection = SocketPipe.Create(socket);
        try
        {
            await DnsFramedConnection.ServeAsync(
                connection, _handler, _tcpStreams, _logger, _stopping.Token, aborted).ConfigureAwait(false);
        }
        finally
        {
            using var closing = new CancellationTokenSource(CloseDeadline);
            await SocketPipe.CloseAsync(connection, closing.Token).ConfigureAwait(false);
        }
    }
}
