using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Egress.Benchmarks.Tools;

/// <summary>Sends one A query over UDP and waits for a NOERROR answer with at least one record.</summary>
internal static class DnsProbe
{
    public static async Task<int> RunAsync(IPEndPoint server, string name, int timeoutMs)
    {
        byte[] query = BuildQuery(0x4242, name);
        using var socket = new Socket(server.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        using var timeout = new CancellationTokenSource(timeoutMs);
        byte[] response = new byte[1500];
        try
        {
            await socket.ConnectAsync(server, timeout.Token).ConfigureAwait(false);
            await socket.SendAsync(query, SocketFlags.None, timeout.Token).ConfigureAwait(false);
            int length = await socket.ReceiveAsync(response, SocketFlags.None, timeout.Token).ConfigureAwait(false);
            int rcode = length >= 12 ? response[3] & 0x0F : -1;
            int answers = length >= 12 ? BinaryPrimitives.ReadUInt16BigEndian(response.AsSpan(6)) : 0;
            bool ok = length >= 12 && BinaryPrimitives.ReadUInt16BigEndian(response) == 0x4242 && rcode == 0 && answers > 0;
            Console.WriteLine($"rcode={rcode} answers={answers}");
            return ok ? 0 : 1;
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            Console.WriteLine($"no_answer=\"{ex.Message}\"");
            return 1;
        }
    }

    private static byte[] BuildQuery(ushort id, string name)
    {
        var message = new List<byte>(64);
        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(header, id);
        header[2] = 0x01; // RD
        header[5] = 1; // QDCOUNT = 1
        message.AddRange(header);
        foreach (string label in name.TrimEnd('.').Split('.'))
        {
            message.Add((byte)label.Length);
            message.AddRange(Encoding.ASCII.GetBytes(label));
        }

        message.AddRange([0, 0, 1, 0, 1]); // root, QTYPE A, QCLASS IN
        return [.. message];
    }
}
