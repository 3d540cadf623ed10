using System.Net;
using System.Net.Sockets;

namespace Egress.Tests.Relay;

/// <summary>Transports the socket tests run over.</summary>
public enum SocketTransport
{
    Unix,
    Tcp,
}

/// <summary>Two connected stream sockets, over a Unix socket path or loopback TCP.</summary>
internal sealed class SocketPair : IDisposable
{
    private SocketPair(Socket left, Socket right)
    {
        Left = left;
        Right = right;
    }

    public Socket Left { get; }

    public Socket Right { get; }

    public static async Task<SocketPair> ConnectAsync(SocketTransport transport)
    {
        string? directory = transport == SocketTransport.Unix ? Directory.CreateTempSubdirectory("egress-pair-").FullName : null;
        try
        {
            using Socket listener = NewSocket(transport);
            listener.Bind(directory is not null
                ? new UnixDomainSocketEndPoint(Path.Combine(directory, "s"))
                : new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(1);
            Socket left = NewSocket(transport);
            Task<Socket> accepted = listener.AcceptAsync();
            await left.ConnectAsync(listener.LocalEndPoint!);
            Socket right = await accepted;
            if (transport == SocketTransport.Tcp)
            {
                left.NoDelay = true;
                right.NoDelay = true;
            }

            return new SocketPair(left, right);
        }
        finally
        {
            if (directory is not null)
            {
                Directory.Delete(directory, recursive: true);
            }
        }
    }

    public void Dispose()
    {
        Left.Dispose();
        Right.Dispose();
    }

    private static Socket NewSocket(SocketTransport transport) => transport == SocketTransport.Unix
        ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
        : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
}
