using System.Net;
using System.Net.Sockets;
using DnsClient;
using Egress.Dns;
using Egress.Dns.Forwarder;
using Egress.Dns.Wire;
using Egress.Gateway;
using Egress.Policy;
using Egress.Tunnel;

namespace Egress.Tests.Dns;

/// <summary>
/// Both hops on loopback: an enclave <see cref="DnsForwarder"/> on 127.0.0.1:random (UDP+TCP) forwarding over a
/// <c>unix:</c> tunnel in a temp directory to a <see cref="TunnelGateway"/>, which forwards to the given upstreams.
/// Each side has its own policy and cache, as in production.
/// </summary>
internal sealed class DnsTunnelHarness : IAsyncDisposable
{
    public static readonly string[] Destinations = ["*.x.test", "api.y.test", "*.deep.test"];

    private readonly string _directory;
    private readonly IReadOnlyList<IPEndPoint> _upstreams;
    private readonly TimeSpan _parentTimeout;
    private TunnelGateway? _gateway;

    private DnsTunnelHarness(IReadOnlyList<IPEndPoint> upstreams, TimeSpan parentTimeout, TimeSpan queryTimeout, int streams)
    {
        _upstreams = upstreams;
        _parentTimeout = parentTimeout;
        _directory = Directory.CreateTempSubdirectory("egress-dns-").FullName;
        Tunnel = TunnelEndpoint.Parse("unix:" + Path.Combine(_directory, "t.sock"));
        EnclavePolicy = EgressPolicy.Create(true, Destinations, new AllowlistCache());
        ParentPolicy = EgressPolicy.Create(true, Destinations, new AllowlistCache());
        Forwarder = new DnsForwarder(
            new DnsForwarderOptions
            {
                Listen = [new IPEndPoint(IPAddress.Loopback, 0)],
                Tunnel = Tunnel,
                QueryTimeout = queryTimeout,
                StatusTimeout = TimeSpan.FromSeconds(5),
                StreamCount = streams,
            },
            EnclavePolicy,
            EnclaveLog.Factory);
    }

    public TunnelEndpoint Tunnel { get; }

    public EgressPolicy EnclavePolicy { get; }

    public EgressPolicy ParentPolicy { get; }

    public LogCapture EnclaveLog { get; } = new();

    public LogCapture ParentLog { get; } = new();

    public DnsForwarder Forwarder { get; }

    public IPEndPoint EndPoint => Forwarder.LocalEndPoints[0];

    public static async Task<DnsTunnelHarness> StartAsync(
        IReadOnlyList<IPEndPoint> upstreams, TimeSpan? parentTimeout = null, TimeSpan? queryTimeout = null, int streams = 2)
    {
        var harness = new DnsTunnelHarness(upstreams, parentTimeout ?? TimeSpan.FromSeconds(2), queryTimeout ?? TimeSpan.FromSeconds(5), streams);
        await harness.StartGatewayAsync();
        harness.Forwarder.Start();
        return harness;
    }

    public Task StartGatewayAsync()
    {
        _gateway = new TunnelGateway(
            new TunnelGatewayOptions { Listen = Tunnel, DnsUpstreams = _upstreams, DnsTimeout = _parentTimeout, ShutdownDrain = TimeSpan.Zero },
            ParentPolicy,
            ParentLog.Factory);
        _gateway.Start();
        return Task.CompletedTask;
    }

    public async Task StopGatewayAsync()
    {
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
            _gateway = null;
        }
    }

    public LookupClient Client(bool tcpOnly = false) => new(new LookupClientOptions(new NameServer(EndPoint))
    {
        UseCache = false,
        Retries = 0,
        Timeout = TimeSpan.FromSeconds(10),
        UseTcpOnly = tcpOnly,
        ContinueOnDnsError = false,
        ThrowDnsErrors = false,
    });

    /// <summary>Sends one datagram and returns the first answer.</summary>
    public async Task<byte[]> UdpAsync(byte[] query)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Connect(EndPoint);
        await socket.SendAsync(query, SocketFlags.None);
        return await ReceiveAsync(socket);
    }

    public static async Task<byte[]> ReceiveAsync(Socket socket)
    {
        byte[] buffer = new byte[65536];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        int received = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
        return buffer[..received];
    }

    /// <summary>Sends one framed query on a new TCP connection and returns the answer.</summary>
    public async Task<byte[]> TcpAsync(byte[] query)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(EndPoint);
        byte[] frame = new byte[query.Length + 2];
        DnsTcpFraming.WriteMessage(query, frame);
        await socket.SendAsync(frame, SocketFlags.None);
        return await ReadFrameAsync(socket);
    }

    public static async Task<byte[]> ReadFrameAsync(Socket socket)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        byte[] prefix = new byte[2];
        await ReadExactlyAsync(socket, prefix, timeout.Token);
        byte[] message = new byte[(prefix[0] << 8) | prefix[1]];
        await ReadExactlyAsync(socket, message, timeout.Token);
        return message;
    }

    public async ValueTask DisposeAsync()
    {
        await Forwarder.DisposeAsync();
        await StopGatewayAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private static async Task ReadExactlyAsync(Socket socket, byte[] buffer, CancellationToken cancellationToken)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cancellationToken);
            if (n == 0)
            {
                throw new EndOfStreamException();
            }

            read += n;
        }
    }
}
