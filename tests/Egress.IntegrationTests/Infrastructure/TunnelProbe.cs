using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// Speaks tunnel protocol v1 to egress-host directly, the way a compromised enclave could, to check the parent's
/// own policy. Request: <c>01 01 &lt;u16 BE body length&gt; 04 &lt;4 address bytes&gt; &lt;u16 BE port&gt; 00</c>
/// (version 1, kind 1 = TCP; body: family 4, address, port, hint length 0).
/// Response: <c>01 &lt;status&gt; &lt;u8 detail length&gt; &lt;detail&gt;</c>.
/// </summary>
internal static class TunnelProbe
{
    public const byte Version = 1;

    public const byte StatusDeniedByPolicy = 1;

    public const byte StatusOk = 0;

    public static byte[] TcpRequest(IPEndPoint destination, string hint = "")
    {
        if (destination.AddressFamily != AddressFamily.InterNetwork)
        {
            throw new ArgumentException("the probe only builds IPv4 requests", nameof(destination));
        }

        var hintBytes = Encoding.ASCII.GetBytes(hint);
        var bodyLength = 1 + 4 + 2 + 1 + hintBytes.Length;
        var request = new byte[4 + bodyLength];
        request[0] = Version;
        request[1] = 1; // kind: TCP
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(2), (ushort)bodyLength);
        request[4] = 4; // family: IPv4
        destination.Address.TryWriteBytes(request.AsSpan(5, 4), out _);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(9), (ushort)destination.Port);
        request[11] = (byte)hintBytes.Length;
        hintBytes.CopyTo(request.AsSpan(12));
        return request;
    }

    /// <summary>Sends one request without a host hint on a fresh tunnel stream and reads the status response.</summary>
    public static Task<TunnelResponse> RequestAsync(string tunnelSocketPath, IPEndPoint destination, CancellationToken cancellationToken) =>
        RequestAsync(tunnelSocketPath, destination, string.Empty, cancellationToken);

    /// <summary>Sends one request on a fresh tunnel stream and reads the status response (then closes the stream).</summary>
    public static async Task<TunnelResponse> RequestAsync(string tunnelSocketPath, IPEndPoint destination, string hint, CancellationToken cancellationToken)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(tunnelSocketPath), cancellationToken).ConfigureAwait(false);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync(TcpRequest(destination, hint), cancellationToken).ConfigureAwait(false);
        var header = new byte[3];
        await stream.ReadExactlyAsync(header, cancellationToken).ConfigureAwait(false);
        var detail = new byte[header[2]];
        await stream.ReadExactlyAsync(detail, cancellationToken).ConfigureAwait(false);
        return new TunnelResponse(header[0], header[1], Encoding.UTF8.GetString(detail));
    }
}
