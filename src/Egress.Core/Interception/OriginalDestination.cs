using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Sockets;

namespace Egress.Interception;

/// <summary>
/// Reads where a client meant to connect before iptables redirected it to us (SO_ORIGINAL_DST).
/// </summary>
public static class OriginalDestination
{
    private const int SolIp = 0;
    private const int SolIpv6 = 41;

    /// <summary>SO_ORIGINAL_DST and IP6T_SO_ORIGINAL_DST share the value 80.</summary>
    private const int SoOriginalDst = 80;

    private const ushort AfInet = 2;
    private const ushort AfInet6 = 10;
    private const int SockaddrInSize = 16;
    private const int SockaddrIn6Size = 28;

    /// <summary>
    /// Parses a Linux <c>sockaddr_in</c> (family 2) or <c>sockaddr_in6</c> (family 10), choosing by the family field
    /// (a host-order u16), not by the length. Ports are big-endian. An IPv4-mapped IPv6 address comes out as a plain
    /// IPv4 endpoint.
    /// </summary>
    /// <param name="sockaddr">The raw bytes, at least the full structure for its family (16 or 28 bytes).</param>
    /// <param name="endPoint">The address, when the bytes are a complete <c>sockaddr_in</c> or <c>sockaddr_in6</c>.</param>
    /// <returns>Whether the bytes could be parsed; <see langword="false"/> for short buffers and other families.</returns>
    internal static bool TryParseSockaddr(ReadOnlySpan<byte> sockaddr, [NotNullWhen(true)] out IPEndPoint? endPoint)
    {
        endPoint = null;
        if (sockaddr.Length < sizeof(ushort))
        {
            return false;
        }

        switch (BitConverter.ToUInt16(sockaddr))
        {
            case AfInet when sockaddr.Length >= SockaddrInSize:
                endPoint = new IPEndPoint(new IPAddress(sockaddr.Slice(4, 4)), BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]));
                return true;

            case AfInet6 when sockaddr.Length >= SockaddrIn6Size:
                int port = BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]);
                ReadOnlySpan<byte> address = sockaddr.Slice(8, 16);
                endPoint = IsIPv4Mapped(address)
                    ? new IPEndPoint(new IPAddress(address[12..]), port)
                    : new IPEndPoint(new IPAddress(address, BitConverter.ToUInt32(sockaddr[24..])), port);
                return true;

            default:
                return false;
        }
    }

    /// <summary>
    /// Reads the original destination of a connection accepted by a listener that iptables DNAT or REDIRECT
    /// sends traffic to.
    /// </summary>
    /// <remarks>
    /// IPv4 connections, including IPv4 clients of a dual-mode IPv6 listener, are asked at level SOL_IP; IPv6
    /// connections at SOL_IPV6. A connection that reached the listener without translation is
    /// <see cref="OriginalDestinationStatus.NotRedirected"/>: either conntrack has no entry for it (ENOENT, surfaced
    /// by .NET as <see cref="SocketError.AddressNotAvailable"/>) or the recorded destination is the listener's own
    /// address. Relaying such a connection would make the proxy connect to itself.
    /// </remarks>
    /// <param name="accepted">A TCP socket returned by accept.</param>
    /// <returns>The status, the destination when redirected, and otherwise a detail saying why not.</returns>
    /// <exception cref="ObjectDisposedException">The socket is disposed.</exception>
    public static OriginalDestinationResult Read(Socket accepted)
    {
        ArgumentNullException.ThrowIfNull(accepted);
        if (accepted.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6))
        {
            return Failed($"the socket is not an IP socket (address family {accepted.AddressFamily})");
        }

        if (accepted.SocketType != SocketType.Stream)
        {
            return Failed($"the socket is not a TCP socket ({accepted.SocketType}): only TCP connections are redirected to the proxy");
        }

        if (accepted.LocalEndPoint is not IPEndPoint local)
        {
            return Failed("the socket has no local address (not bound, not accepted)");
        }

        if (!accepted.Connected)
        {
            // A listener, or a socket bound and never connected: getsockopt would say ENOENT, as for a connection that
            // conntrack never saw, and send the caller looking at the rules instead of at what it passed.
            return Failed(IsListener(accepted)
                ? $"the socket is a listener ({local}), not a connection: pass a socket that accept returned"
                : $"the socket is not a connection ({local}, no peer): never connected, or already shut down or disconnected; read the original destination right after accept, before shutting the socket down");
        }

        int level = accepted.AddressFamily == AddressFamily.InterNetworkV6
            && accepted.RemoteEndPoint is IPEndPoint { Address.IsIPv4MappedToIPv6: false }
            ? SolIpv6
            : SolIp;

        Span<byte> buffer = stackalloc byte[SockaddrIn6Size];
        int length;
        try
        {
            length = accepted.GetRawSocketOption(level, SoOriginalDst, buffer);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressNotAvailable)
        {
            return new(OriginalDestinationStatus.NotRedirected, null, "conntrack has no entry for this connection (SO_ORIGINAL_DST: ENOENT)");
        }
        catch (SocketException e)
        {
            return Failed($"SO_ORIGINAL_DST at level {level} failed: {e.SocketErrorCode} ({e.Message})");
        }

        if (!TryParseSockaddr(buffer[..length], out IPEndPoint? destination))
        {
            return Failed($"SO_ORIGINAL_DST at level {level} returned {length} bytes that are not a sockaddr_in or sockaddr_in6");
        }

        if (destination.Port == local.Port
            && (destination.Address.Equals(local.Address)
                || (local.Address.IsIPv4MappedToIPv6 && destination.Address.Equals(local.Address.MapToIPv4()))))
        {
            return new(
                OriginalDestinationStatus.NotRedirected,
                null,
                $"the original destination {destination} is the listener itself (conntrack saw the connection but did not translate it)");
        }

        return new(OriginalDestinationStatus.Redirected, destination, null);
    }

    /// <summary>Whether the socket listens (SO_ACCEPTCONN); false when that cannot be read.</summary>
    private static bool IsListener(Socket socket)
    {
        try
        {
            return socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.AcceptConnection) is int and not 0;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static bool IsIPv4Mapped(ReadOnlySpan<byte> address) =>
        address[..10].IndexOfAnyExcept((byte)0) < 0 && address[10] == 0xFF && address[11] == 0xFF;

    private static OriginalDestinationResult Failed(string detail) => new(OriginalDestinationStatus.Failed, null, detail);
}
