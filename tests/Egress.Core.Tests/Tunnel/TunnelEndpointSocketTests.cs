using System.Net;
using System.Net.Sockets;
using Egress.Tunnel;
using Egress.Vsock;

namespace Egress.Tests.Tunnel;

public sealed class TunnelEndpointSocketTests
{
    private DirectoryInfo _directory = null!;

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("egress-te-");

    [TearDown]
    public void DeleteDirectory() => _directory.Delete(recursive: true);

    [Test]
    public async Task UnixListenConnectEcho()
    {
        TunnelEndpoint endpoint = TunnelEndpoint.Parse("unix:" + SocketPath());
        using Socket listener = endpoint.Listen();

        await AssertEchoAsync(endpoint, listener);
    }

    [Test]
    public async Task UnixListenReplacesStaleSocketFile()
    {
        string path = SocketPath();
        MakeStaleSocketFile(path);
        TunnelEndpoint endpoint = TunnelEndpoint.Parse("unix:" + path);

        using Socket listener = endpoint.Listen();

        await AssertEchoAsync(endpoint, listener);
    }

    // Both failures read "Cannot assign requested address" (ENOENT as the runtime maps it) with advice about IP
    // addresses before.
    [Test]
    public void UnixListenInADirectoryThatDoesNotExistSaysSo()
    {
        string directory = Path.Combine(_directory.FullName, "missing");
        TunnelEndpoint endpoint = TunnelEndpoint.Parse($"unix:{directory}/x.sock");

        Assert.That(() => endpoint.Listen(), Throws.InstanceOf<IOException>().With.Message.EqualTo(
            $"Cannot listen on unix:{directory}/x.sock: the directory '{directory}' does not exist; create it first (only the socket is created here)."));
    }

    [Test]
    public void UnixConnectToAPathWithNoSocketSaysSo()
    {
        string path = SocketPath();
        TunnelEndpoint endpoint = TunnelEndpoint.Parse("unix:" + path);

        var error = Assert.ThrowsAsync<SocketException>(async () => (await endpoint.ConnectAsync(CancellationToken.None)).Dispose());

        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.AddressNotAvailable));
        Assert.That(error.Message, Is.EqualTo($"no socket at {path} (ENOENT: egress-host creates it when it listens and removes it when a stop begins; is it running with this tunnel endpoint, or stopping?)"));
    }

    /// <summary>A library trial: after egress-host was killed, its socket file stayed and a connect read "Connection
    /// refused" alone, naming neither the path nor what it means.</summary>
    [TestCase(false)]
    [TestCase(true)]
    public void UnixConnectToASocketFileNobodyListensOnSaysSo(bool forRelay)
    {
        string path = SocketPath();
        // Bound and not listening: connect(2) answers ECONNREFUSED, as for the file a killed egress-host left behind (a
        // closed Socket would remove its file here).
        using var stale = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        stale.Bind(new UnixDomainSocketEndPoint(path));
        TunnelEndpoint endpoint = TunnelEndpoint.Parse("unix:" + path);

        var error = Assert.ThrowsAsync<SocketException>(async () =>
            (await (forRelay ? endpoint.ConnectForRelayAsync(CancellationToken.None) : endpoint.ConnectAsync(CancellationToken.None))).Dispose());

        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionRefused));
        Assert.That(error.Message, Does.StartWith($"nothing accepts connections on unix:{path} (ECONNREFUSED: the socket file is there but no process listens on it"));
    }

    [Test]
    public void TcpConnectThatIsRefusedNamesTheEndpoint()
    {
        int port;
        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            port = ((IPEndPoint)probe.LocalEndPoint!).Port; // free once closed: nothing listens there
        }

        TunnelEndpoint endpoint = TunnelEndpoint.Parse($"tcp://127.0.0.1:{port}");

        var error = Assert.ThrowsAsync<SocketException>(async () => (await endpoint.ConnectAsync(CancellationToken.None)).Dispose());

        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionRefused));
        Assert.That(error.Message, Does.StartWith($"nothing accepts connections on tcp://127.0.0.1:{port} (ECONNREFUSED"));
    }

    /// <summary>A library-consumer trial: on a machine with no VSOCK transport (this one, and the CI machine) connect(2)
    /// answers ENODEV, which the runtime does not name, and the error read "Unknown socket error" alone.</summary>
    [TestCase(false)]
    [TestCase(true)]
    public void AVsockConnectTheRuntimeCannotNameSaysWhereAndWhatItMayMean(bool forRelay)
    {
        TunnelEndpoint endpoint = TunnelEndpoint.Parse("vsock://3:4433");
        SocketException? error = null;
        try
        {
            using Socket socket = (forRelay ? endpoint.ConnectForRelayAsync(CancellationToken.None) : endpoint.ConnectAsync(CancellationToken.None)).AsTask().GetAwaiter().GetResult();
        }
        catch (SocketException ex)
        {
            error = ex;
        }

        Assume.That(error?.SocketErrorCode, Is.EqualTo(SocketError.SocketError), $"this machine has a VSOCK transport: {error?.Message ?? "connected"}");
        Assert.That(error!.Message, Does.Contain(" connecting to vsock://3:4433 (an error .NET does not name: connect(2) answers ENODEV when no VSOCK transport reaches that CID"));
        if (forRelay)
        {
            Assert.That(error.Message, Does.StartWith("No such device (errno 19) connecting to vsock://3:4433"), "our own connect knows the errno");
        }
    }

    [Test]
    public void UnixListenRefusesToDeleteARegularFile()
    {
        string path = SocketPath();
        File.WriteAllText(path, "precious");
        TunnelEndpoint endpoint = TunnelEndpoint.Parse("unix:" + path);

        Assert.That(() => endpoint.Listen(), Throws.InstanceOf<IOException>().With.Message.Contains($"'{path}' exists and is not a socket"));
        Assert.That(File.ReadAllText(path), Is.EqualTo("precious"));
    }

    [Test]
    public void UnixListenRefusesToDeleteADirectory()
    {
        string path = SocketPath();
        Directory.CreateDirectory(path);

        Assert.That(() => TunnelEndpoint.Parse("unix:" + path).Listen(), Throws.InstanceOf<IOException>().With.Message.Contains("is not a socket"));
        Assert.That(Directory.Exists(path), Is.True);
    }

    [Test]
    public void UnixListenRefusesToFollowASymbolicLinkToAStaleSocket()
    {
        string target = SocketPath();
        MakeStaleSocketFile(target);
        string link = Path.Combine(_directory.FullName, "link.sock");
        File.CreateSymbolicLink(link, target);

        Assert.That(() => TunnelEndpoint.Parse("unix:" + link).Listen(), Throws.InstanceOf<IOException>().With.Message.Contains("is not a socket"));
        Assert.That(File.Exists(target), Is.True);
    }

    [Test]
    public async Task UnixListenRefusesToStealALiveListenersSocket()
    {
        TunnelEndpoint endpoint = TunnelEndpoint.Parse("unix:" + SocketPath());
        using Socket first = endpoint.Listen();

        Assert.That(() => endpoint.Listen(), Throws.InstanceOf<IOException>().With.Message.Contains("another process is accepting connections"));

        // The liveness probe shows up at the live listener as a connection closed without data.
        using (Socket probe = await first.AcceptAsync())
        {
            Assert.That(await probe.ReceiveAsync(new byte[1]), Is.Zero);
        }

        await AssertEchoAsync(endpoint, first);
    }

    [Test]
    public void UnixConnectToMissingPathThrowsSocketException()
    {
        TunnelEndpoint endpoint = TunnelEndpoint.Parse("unix:" + SocketPath());

        Assert.That(async () => await endpoint.ConnectAsync(CancellationToken.None), Throws.InstanceOf<SocketException>());
    }

    [Test]
    public async Task TcpIPv4LoopbackListenConnectEcho()
    {
        TunnelEndpoint endpoint = TunnelEndpoint.Parse($"tcp://127.0.0.1:{FreeTcpPort(IPAddress.Loopback)}");
        using Socket listener = endpoint.Listen();

        Assert.That(SocketOption(listener, 2 /* SO_REUSEADDR */), Is.Not.Zero, "SO_REUSEADDR: a restart rebinds at once");
        await AssertEchoAsync(endpoint, listener);
    }

    /// <summary>The runtime's ReuseAddress sets SO_REUSEPORT too on Linux: a second listener on the port bound without
    /// an error and took a share of the connections (a library user's trial: 20 connects, 8 and 12).</summary>
    [Test]
    public void ASecondTcpListenerOnTheSameAddressFailsAsAddressInUse()
    {
        TunnelEndpoint endpoint = TunnelEndpoint.Parse($"tcp://127.0.0.1:{FreeTcpPort(IPAddress.Loopback)}");
        using Socket first = endpoint.Listen();

        Assert.That(SocketOption(first, 15 /* SO_REUSEPORT */), Is.Zero, "SO_REUSEPORT");
        var error = Assert.Throws<SocketException>(() => endpoint.Listen().Dispose());
        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.AddressAlreadyInUse));
    }

    private static int SocketOption(Socket socket, int name)
    {
        var value = new byte[4];
        socket.GetRawSocketOption(1 /* SOL_SOCKET */, name, value);
        return BitConverter.ToInt32(value);
    }

    [Test]
    public async Task TcpIPv6LoopbackListenConnectEcho()
    {
        TunnelEndpoint endpoint = TunnelEndpoint.Parse($"tcp://[::1]:{FreeTcpPort(IPAddress.IPv6Loopback)}");
        using Socket listener = endpoint.Listen();

        await AssertEchoAsync(endpoint, listener);
    }

    [Test]
    public async Task TcpConnectedSocketHasNoDelay()
    {
        TunnelEndpoint endpoint = TunnelEndpoint.Parse($"tcp://127.0.0.1:{FreeTcpPort(IPAddress.Loopback)}");
        using Socket listener = endpoint.Listen();

        using Socket client = await endpoint.ConnectAsync(CancellationToken.None);

        Assert.That(client.NoDelay, Is.True);
        Assert.That(client.RemoteEndPoint, Is.EqualTo(endpoint.EndPoint));
    }

    [Test]
    public void CreateSocketMatchesTheTransport()
    {
        using Socket unix = TunnelEndpoint.Parse("unix:/x").CreateSocket();
        using Socket tcp4 = TunnelEndpoint.Parse("tcp://127.0.0.1:1").CreateSocket();
        using Socket tcp6 = TunnelEndpoint.Parse("tcp://[::1]:1").CreateSocket();

        Assert.That((unix.AddressFamily, unix.SocketType), Is.EqualTo((AddressFamily.Unix, SocketType.Stream)));
        Assert.That((tcp4.AddressFamily, tcp4.ProtocolType, tcp4.NoDelay), Is.EqualTo((AddressFamily.InterNetwork, ProtocolType.Tcp, true)));
        Assert.That((tcp6.AddressFamily, tcp6.ProtocolType, tcp6.NoDelay), Is.EqualTo((AddressFamily.InterNetworkV6, ProtocolType.Tcp, true)));
    }

    [Test]
    public void VsockListenOnAnyCidBindsAndListens()
    {
        if (!VsockSocket.IsSupported)
        {
            Assert.Ignore("VSOCK needs Linux with /dev/vsock; this machine has none.");
        }

        TunnelEndpoint endpoint = TunnelEndpoint.Parse("vsock://any:any");

        using Socket listener = endpoint.Listen();

        Assert.That(listener.AddressFamily, Is.EqualTo(AddressFamily.Unknown));
        Assert.That(((VsockEndPoint)listener.LocalEndPoint!).Cid, Is.EqualTo(VsockEndPoint.AnyCid));
        Assert.That(listener.IsBound, Is.True);
    }

    private string SocketPath() => Path.Combine(_directory.FullName, "egress.sock");

    /// <summary>Leaves a socket file at <paramref name="path"/> that no process listens on.</summary>
    private void MakeStaleSocketFile(string path)
    {
        string bindPath = Path.Combine(_directory.FullName, "bound.sock");
        using (var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            socket.Bind(new UnixDomainSocketEndPoint(bindPath));
            socket.Listen();

            // The runtime unlinks the path it bound when the socket is disposed; a renamed file survives, as after a crash.
            File.Move(bindPath, path);
        }

        Assert.That(File.Exists(path), Is.True, "precondition: a stale socket file exists");
    }

    private static int FreeTcpPort(IPAddress address)
    {
        using var probe = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(address, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    private static async Task AssertEchoAsync(TunnelEndpoint endpoint, Socket listener)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        ValueTask<Socket> accepting = listener.AcceptAsync(timeout.Token);
        using Socket client = await endpoint.ConnectAsync(timeout.Token);
        using Socket server = await accepting;

        byte[] request = [1, 2, 3, 4, 5];
        await client.SendAsync(request, timeout.Token);
        byte[] received = await ReceiveExactlyAsync(server, request.Length, timeout.Token);
        await server.SendAsync(received, timeout.Token);
        byte[] echoed = await ReceiveExactlyAsync(client, request.Length, timeout.Token);

        Assert.That(echoed, Is.EqualTo(request));
    }

    private static async Task<byte[]> ReceiveExactlyAsync(Socket socket, int length, CancellationToken cancellationToken)
    {
        byte[] buffer = new byte[length];
        for (int read = 0; read < length;)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(read), cancellationToken);
            Assert.That(n, Is.Not.Zero, $"the peer closed after {read} of {length} bytes");
            read += n;
        }

        return buffer;
    }
}
