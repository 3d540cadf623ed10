using System.Net;
using System.Net.Sockets;

namespace Egress.Tests.Gateway;

/// <summary>
/// A TCP server on 127.0.0.1 (or a given address) that optionally sends a banner first, then echoes every byte and
/// half-closes after the client's half-close. Keeps the last accepted socket for tests that watch it.
/// </summary>
internal sealed class EchoServer : IDisposable
{
    private readonly Socket _listener;
    private readonly byte[] _banner;
    private readonly TaskCompletionSource<Socket> _accepted = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public EchoServer(IPAddress? address = null, byte[]? banner = null)
    {
        _banner = banner ?? [];
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(address ?? IPAddress.Loopback, 0));
        _listener.Listen(16);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        Served = ServeAsync();
    }

    public IPEndPoint EndPoint { get; }

    /// <summary>Completes when the first connection ended: the bytes echoed, or the error that ended it.</summary>
    public Task<long> Served { get; }

    /// <summary>The first accepted connection.</summary>
    public Task<Socket> Accepted => _accepted.Task;

    public void Dispose() => _listener.Dispose();

    private async Task<long> ServeAsync()
    {
        using Socket socket = await _listener.AcceptAsync();
        _accepted.SetResult(socket);
        if (_banner.Length > 0)
        {
            await socket.SendAsync(_banner);
        }

        var buffer = new byte[64 * 1024];
        long echoed = 0;
        while (true)
        {
            int read = await socket.ReceiveAsync(buffer);
            if (read == 0)
            {
                socket.Shutdown(SocketShutdown.Send);
                return echoed;
            }

            await socket.SendAsync(buffer.AsMemory(0, read));
            echoed += read;
        }
    }
}
