using System.Net;
using System.Net.Sockets;

namespace Egress.Benchmarks.Tools;

/// <summary>Echoes every byte back and closes after the peer's EOF; an idle connection costs one pending receive.</summary>
internal static class EchoServer
{
    public static async Task<int> RunAsync(IPEndPoint listen)
    {
        using var listener = new Socket(listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(listen);
        listener.Listen(4096);
        Console.WriteLine($"listening={listen}");
        while (true)
        {
            Socket connection = await listener.AcceptAsync().ConfigureAwait(false);
            _ = Task.Run(() => EchoAsync(connection));
        }
    }

    private static async Task EchoAsync(Socket connection)
    {
        connection.NoDelay = true;
        byte[]? buffer = null;
        try
        {
            while (true)
            {
                // Wait for data without holding a buffer, so 10,000 idle connections cost no buffers here.
                await connection.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).ConfigureAwait(false);
                buffer ??= new byte[16 * 1024];
                int read = await connection.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                await connection.SendAsync(buffer.AsMemory(0, read), SocketFlags.None).ConfigureAwait(false);
            }

            connection.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
            // The peer reset: nothing to report.
        }
        finally
        {
            connection.Dispose();
        }
    }
}
