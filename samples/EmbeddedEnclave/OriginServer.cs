using System.Net;
using System.Net.Sockets;
using System.Text;

namespace EmbeddedEnclave;

/// <summary>
/// The "internet" of this sample: a TCP server on 127.0.0.1 that reads one line and answers
/// <c>hello from the origin, you sent: LINE</c>, then closes.
/// </summary>
internal sealed class OriginServer : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;

    private OriginServer(TcpListener listener)
    {
        _listener = listener;
        _acceptLoop = AcceptLoopAsync();
    }

    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndpoint;

    public static OriginServer Start()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return new OriginServer(listener);
    }

    /// <summary>A loopback port nothing listens on (bound, then released), so connecting to it is refused.</summary>
    public static IPEndPoint UnusedLoopbackEndPoint()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return (IPEndPoint)probe.LocalEndPoint!;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        try
        {
            await _acceptLoop;
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            var client = await _listener.AcceptTcpClientAsync(_stop.Token);
            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                using var reader = new StreamReader(stream, Encoding.ASCII, leaveOpen: true);
                var line = await reader.ReadLineAsync(_stop.Token);
                var reply = Encoding.ASCII.GetBytes($"hello from the origin, you sent: {line}");
                await stream.WriteAsync(reply, _stop.Token);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or SocketException)
            {
                Console.WriteLine($"   origin: connection ended early: {ex.Message}");
            }
        }
    }
}
