using System.Net;
using System.Net.Sockets;

namespace Egress.Stress;

/// <summary>The world's side of the hostile traffic: servers that accept and never answer. Run until killed.</summary>
internal static class Servers
{
    /// <summary>Accepts TCP connections and holds them, reading and discarding, until the peer closes.</summary>
    public static async Task<int> HoldAsync(IPEndPoint listen)
    {
        using Socket listener = Listen(listen);
        Console.WriteLine($"listening={listen}");
        await AcceptAndDiscardAsync(listener).ConfigureAwait(false);
        return 0;
    }

    /// <summary>
    /// A DNS server that never answers: reads UDP datagrams and TCP connections on the same address and discards
    /// every byte (the black-hole upstream of issue 13 case 4).
    /// </summary>
    public static async Task<int> DnsBlackHoleAsync(IPEndPoint listen)
    {
        using Socket tcp = Listen(listen);
        using var udp = new Socket(listen.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        udp.Bind(listen);
        Console.WriteLine($"listening={listen}");
        Task tcpTask = AcceptAndDiscardAsync(tcp);
        byte[] datagram = new byte[65536];
        EndPoint any = new IPEndPoint(listen.AddressFamily == AddressFamily.InterNetwork ? IPAddress.Any : IPAddress.IPv6Any, 0);
        while (true)
        {
            await udp.ReceiveFromAsync(datagram, SocketFlags.None, any).ConfigureAwait(false);
        }
    }

    private static Socket Listen(IPEndPoint listen)
    {
        var listener = new Socket(listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(listen);
        listener.Listen(4096);
        return listener;
    }

    private static async Task AcceptAndDiscardAsync(Socket listener)
    {
        while (true)
        {
            Socket connection = await listener.AcceptAsync().ConfigureAwait(false);
            _ = Task.Run(() => DiscardAsync(connection));
        }
    }

    private static async Task DiscardAsync(Socket connection)
    {
        using (connection)
        {
            byte[] buffer = new byte[4096];
            try
            {
                while (await connection.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false) > 0)
                {
                }
            }
            catch (SocketException)
            {
                // Reset by the peer.
            }
        }
    }
}
