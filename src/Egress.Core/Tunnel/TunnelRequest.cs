using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Egress.Tunnel;

/// <summary>
/// The header an enclave sends on a new tunnel stream: either a TCP destination (with an optional host name hint
/// for the parent's logs and policy) or a request for a DNS stream. The destination address is stored inline, so
/// encoding and decoding a request without a hint allocate nothing.
/// </summary>
internal readonly record struct TunnelRequest
{
    private readonly UInt128 _address;
    private readonly ushort _port;
    private readonly byte _family;

    private TunnelRequest(TunnelRequestKind kind, byte family, UInt128 address, ushort port, string? hostHint)
    {
        Kind = kind;
        _family = family;
        _address = address;
        _port = port;
        HostHint = hostHint;
        Version = TunnelCodec.Version;
    }

    /// <summary>
    /// The protocol version the request is written in: <see cref="TunnelCodec.Version"/> (1, raw payload) or
    /// <see cref="TunnelCodec.Version2"/> (2, framed payload with an END frame per direction; TCP only).
    /// </summary>
    public byte Version { get; private init; }

    /// <summary>
    /// The enclave's random 64-bit id of the connection (v2 requests only; 0 in v1), logged by both hosts so their
    /// lines about one connection can be joined.
    /// </summary>
    public ulong ConnectionId { get; private init; }

    /// <summary>What the stream carries after an <see cref="TunnelStatus.Ok"/> answer.</summary>
    public TunnelRequestKind Kind { get; }

    /// <summary>
    /// The TCP destination, or <see langword="null"/> for a DNS or denial report request. Each read creates a new
    /// <see cref="IPEndPoint"/>; IPv6 scope ids are not carried.
    /// </summary>
    public IPEndPoint? Destination
    {
        get
        {
            if (_family == 0)
            {
                return null;
            }

            Span<byte> bytes = stackalloc byte[16];
            int length = WriteAddress(bytes);
            return new IPEndPoint(new IPAddress(bytes[..length]), _port);
        }
    }

    /// <summary>The host name the enclave resolved the destination from, if it knows one; never empty.</summary>
    public string? HostHint { get; }

    /// <summary>The wire address family byte: 4, 6, or 0 for a DNS request.</summary>
    internal byte AddressFamilyByte => _family;

    /// <summary>The destination port (0 for a DNS request).</summary>
    internal ushort Port => _port;

    /// <summary>Creates a TCP connect request.</summary>
    /// <param name="destination">An IPv4 or IPv6 destination with a port in 1..65535.</param>
    /// <param name="hostHint">
    /// Optional host name: at most 253 ASCII letters, digits, '-', '.' or '_'. An empty string means no hint.
    /// </param>
    /// <exception cref="ArgumentException">The address family is not IPv4/IPv6, or the hint is invalid.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The port is 0.</exception>
    public static TunnelRequest ForTcp(IPEndPoint destination, string? hostHint = null)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentOutOfRangeException.ThrowIfZero(destination.Port, nameof(destination));

        if (string.IsNullOrEmpty(hostHint))
        {
            hostHint = null;
        }
        else if (!TunnelHostHint.IsValid(hostHint))
        {
            throw new ArgumentException("A host hint is at most 253 ASCII letters, digits, '-', '.' or '_'.", nameof(hostHint));
        }

        Span<byte> bytes = stackalloc byte[16];
        if (!destination.Address.TryWriteBytes(bytes, out int written))
        {
            throw new ArgumentException("The destination address is not an IPv4 or IPv6 address.", nameof(destination));
        }

        return destination.AddressFamily switch
        {
            AddressFamily.InterNetwork => new(TunnelRequestKind.TcpConnect, 4, BinaryPrimitives.ReadUInt32BigEndian(bytes), (ushort)destination.Port, hostHint),
            AddressFamily.InterNetworkV6 when written == 16 => new(TunnelRequestKind.TcpConnect, 6, BinaryPrimitives.ReadUInt128BigEndian(bytes), (ushort)destination.Port, hostHint),
            _ => throw new ArgumentException("The destination address is not an IPv4 or IPv6 address.", nameof(destination)),
        };
    }

    /// <summary>This TCP request in version 2, carrying <paramref name="connectionId"/>.</summary>
    /// <exception cref="InvalidOperationException">The request is not a TCP connect request.</exception>
    public TunnelRequest AsVersion2(ulong connectionId) => Kind == TunnelRequestKind.TcpConnect
        ? this with { Version = TunnelCodec.Version2, ConnectionId = connectionId }
        : throw new InvalidOperationException("Only TCP connect requests have a version 2.");

    /// <summary>Creates a DNS stream request.</summary>
    public static TunnelRequest ForDns() => new(TunnelRequestKind.Dns, 0, default, 0, null);

    /// <summary>Creates a denial report request (<see cref="TunnelRequestKind.DenialReport"/>).</summary>
    public static TunnelRequest ForDenialReport() => new(TunnelRequestKind.DenialReport, 0, default, 0, null);

    /// <summary>Builds a TCP request from already validated wire fields.</summary>
    internal static TunnelRequest FromWire(ReadOnlySpan<byte> address, ushort port, string? hostHint) =>
        address.Length == 4
            ? new(TunnelRequestKind.TcpConnect, 4, BinaryPrimitives.ReadUInt32BigEndian(address), port, hostHint)
            : new(TunnelRequestKind.TcpConnect, 6, BinaryPrimitives.ReadUInt128BigEndian(address), port, hostHint);

    /// <summary>Writes the address bytes in network order; returns 4, 16, or 0 for a DNS request.</summary>
    internal int WriteAddress(Span<byte> destination)
    {
        switch (_family)
        {
            case 4:
                BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)_address);
                return 4;
            case 6:
                BinaryPrimitives.WriteUInt128BigEndian(destination, _address);
                return 16;
            default:
                return 0;
        }
    }
}
