using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Egress.Relay;
using Egress.Sockets;
using Pipelines.Sockets.Unofficial;

namespace Egress.Tests.Relay;

/// <summary>
/// Client → relay (A side) → upstream over real sockets. The upstream answers only after the client's half-close,
/// so the whole response is in flight when the relay finishes: closing too early truncates it.
/// </summary>
public sealed class RelayPipesSocketTests
{
    public enum Transport
    {
        Unix,
        Tcp,
    }

    private const int ResponseSize = 4 * 1024 * 1024;
    private const int Runs = 30;
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    [TestCase(Transport.Unix)]
    [TestCase(Transport.Tcp)]
    public async Task ResponseSentAfterClientHalfCloseArrivesWhole(Transport transport)
    {
        using var endpoints = new Listeners(transport);
        var failures = new List<string>();
        for (int run = 0; run < Runs; run++)
        {
            byte[] request = DuplexRelayTests.RandomBytes(1000 + run, seed: run);
            byte[] response = DuplexRelayTests.RandomBytes(ResponseSize, seed: 1000 + run);

            Task<byte[]> upstream = ServeOnceAsync(endpoints.Upstream, request.Length, response);
            Task<RelayResult> relay = RelayOnceAsync(endpoints);
            (long length, byte[] hash) = await ClientAsync(endpoints.RelayEndPoint, transport, request).WaitAsync(HangGuard);
            byte[] requestAtUpstream = await upstream.WaitAsync(HangGuard);
            RelayResult result = await relay.WaitAsync(HangGuard);

            if (length != ResponseSize || !hash.AsSpan().SequenceEqual(SHA256.HashData(response)))
            {
                failures.Add($"run {run}: client got {length} of {ResponseSize} bytes");
            }

            if (!requestAtUpstream.AsSpan().SequenceEqual(request) || result.FirstCause != RelayShutdownCause.BothCompleted
                || result.BytesAToB != request.Length || result.BytesBToA != ResponseSize)
            {
                failures.Add($"run {run}: upstream got {requestAtUpstream.Length} bytes, relay {result}");
            }
        }

        Assert.That(failures, Is.Empty);
    }

    [Test]
    public async Task UpstreamResetIsPassedOnAsResetNotEndOfStream()
    {
        using var endpoints = new Listeners(Transport.Tcp);
        Task upstream = ResetAfterSendingAsync(endpoints.Upstream, DuplexRelayTests.RandomBytes(256 * 1024, seed: 3));
        Task<RelayResult> relay = RelayOnceAsync(endpoints);

        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(endpoints.RelayEndPoint);
        await client.SendAsync("hello"u8.ToArray());
        SocketError ended = await ReadUntilEndAsync(client);
        await upstream.WaitAsync(HangGuard);
        RelayResult result = await relay.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(ended, Is.EqualTo(SocketError.ConnectionReset), "the client must see RST, not a clean FIN");
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BReadError));
            Assert.That(result.Error, Is.Not.Null);
        });
    }

    [Test]
    public async Task ResetClosesWithRst()
    {
        using var endpoints = new Listeners(Transport.Tcp);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(endpoints.RelayEndPoint);
        Socket accepted = await endpoints.Relay.AcceptAsync();
        SocketReset.Reset(accepted);
        SocketReset.Reset(accepted); // idempotent on a closed socket

        Assert.That(await ReadUntilEndAsync(client).WaitAsync(HangGuard), Is.EqualTo(SocketError.ConnectionReset));
    }

    private static async Task<RelayResult> RelayOnceAsync(Listeners endpoints)
    {
        Socket accepted = await endpoints.Relay.AcceptAsync();
        accepted.SendBufferSize = 64 * 1024; // keep the tail in the relay's send pipe rather than in a large kernel buffer
        Socket dialed = endpoints.NewSocket();
        await dialed.ConnectAsync(endpoints.UpstreamEndPoint);
        SocketConnection a = RelayPipes.CreateConnection(accepted);
        SocketConnection b = RelayPipes.CreateConnection(dialed);
        RelayResult result = await DuplexRelay.RunAsync(a, b, RelayOptions.Default, CancellationToken.None);
        await Task.WhenAll(RelayPipes.CloseAsync(a).AsTask(), RelayPipes.CloseAsync(b).AsTask());
        return result;
    }

    private static async Task<(long Length, byte[] Hash)> ClientAsync(EndPoint relay, Transport transport, byte[] request)
    {
        using var client = transport == Transport.Unix
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.ReceiveBufferSize = 32 * 1024; // a small window keeps the tail queued inside the relay
        await client.ConnectAsync(relay);
        await client.SendAsync(request);
        client.Shutdown(SocketShutdown.Send);

        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[64 * 1024];
        long length = 0;
        int read;
        while ((read = await client.ReceiveAsync(buffer)) > 0)
        {
            hash.AppendData(buffer, 0, read);
            length += read;
        }

        return (length, hash.GetHashAndReset());
    }

    /// <summary>Accepts one connection, reads the request to its end, then sends the response and closes.</summary>
    private static async Task<byte[]> ServeOnceAsync(Socket listener, int requestLength, byte[] response)
    {
        using Socket server = await listener.AcceptAsync();
        byte[] request = new byte[requestLength + 1];
        int total = 0;
        int read;
        while ((read = await server.ReceiveAsync(request.AsMemory(total))) > 0)
        {
            total += read;
        }

        await server.SendAsync(response);
        server.Shutdown(SocketShutdown.Send);
        return request[..total];
    }

    private static async Task ResetAfterSendingAsync(Socket listener, byte[] data)
    {
        Socket server = await listener.AcceptAsync();
        byte[] request = new byte[5];
        _ = await server.ReceiveAsync(request);
        await server.SendAsync(data);
        SocketReset.Reset(server);
    }

    private static async Task<SocketError> ReadUntilEndAsync(Socket socket)
    {
        byte[] buffer = new byte[64 * 1024];
        try
        {
            while (await socket.ReceiveAsync(buffer) > 0)
            {
            }

            return SocketError.Success;
        }
        catch (SocketException ex)
        {
            return ex.SocketErrorCode;
        }
    }

    /// <summary>The relay's listener and the upstream's listener, on Unix paths or loopback TCP.</summary>
    private sealed class Listeners : IDisposable
    {
        private readonly Transport _transport;
        private readonly string _directory;

        public Listeners(Transport transport)
        {
            _transport = transport;
            _directory = Directory.CreateTempSubdirectory("egress-relay-").FullName;
            Relay = Listen("relay.sock");
            Upstream = Listen("upstream.sock");
        }

        public Socket Relay { get; }

        public Socket Upstream { get; }

        public EndPoint RelayEndPoint => Relay.LocalEndPoint!;

        public EndPoint UpstreamEndPoint => Upstream.LocalEndPoint!;

        public Socket NewSocket() => _transport == Transport.Unix
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);

        public void Dispose()
        {
            Relay.Dispose();
            Upstream.Dispose();
            Directory.Delete(_directory, recursive: true);
        }

        private Socket Listen(string name)
        {
            Socket socket = NewSocket();
            socket.Bind(_transport == Transport.Unix
                ? new UnixDomainSocketEndPoint(Path.Combine(_directory, name))
                : new IPEndPoint(IPAddress.Loopback, 0));
            socket.Listen(16);
            return socket;
        }
    }
}
