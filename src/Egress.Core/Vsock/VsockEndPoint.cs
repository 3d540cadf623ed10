using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Egress.Diagnostics;

namespace Egress.Vsock;

/// <summary>
/// A VSOCK address: a context id (CID) and a port, written <c>vsock://CID:PORT</c>.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="AddressFamily"/> is <see cref="AddressFamily.Unknown"/>, not AF_VSOCK (40): sockets created by
/// <see cref="VsockSocket.Create"/> report <see cref="AddressFamily.Unknown"/>, and the runtime only accepts an
/// endpoint whose family matches the socket's. The serialized form still carries family 40, which is what the
/// kernel reads.
/// </para>
/// <para>
/// The serialized form is <c>struct sockaddr_vm</c> (16 bytes, host byte order): <c>u16 family = 40</c>,
/// <c>u16 reserved</c>, <c>u32 port</c>, <c>u32 cid</c>, <c>u8 flags</c>, three zero bytes.
/// </para>
/// </remarks>
public sealed class VsockEndPoint : EndPoint, IEquatable<VsockEndPoint>
{
    /// <summary>VMADDR_CID_ANY: bind to every local CID.</summary>
    public const uint AnyCid = 0xFFFFFFFF;

    /// <summary>VMADDR_CID_HYPERVISOR (0).</summary>
    public const uint HypervisorCid = 0;

    /// <summary>VMADDR_CID_LOCAL (1): local loopback, where the kernel supports it.</summary>
    public const uint LocalCid = 1;

    /// <summary>VMADDR_CID_HOST (2): the host of a regular virtual machine.</summary>
    public const uint HostCid = 2;

    /// <summary>The parent EC2 instance as seen from a Nitro Enclave (CID 3).</summary>
    public const uint ParentCid = 3;

    /// <summary>VMADDR_PORT_ANY: let the kernel choose a port when binding.</summary>
    public const uint AnyPort = 0xFFFFFFFF;

    /// <summary>AF_VSOCK on Linux.</summary>
    internal const ushort NativeAddressFamily = 40;

    /// <summary>sizeof(struct sockaddr_vm).</summary>
    internal const int SockaddrSize = 16;

    internal const string AcceptedForm =
        "vsock://CID:PORT (CID: a decimal number, any, parent, host or local; PORT: a decimal number 1-4294967294, or any)";

    private const string Scheme = "vsock://";

    /// <summary>Creates an endpoint for a context id and a port.</summary>
    /// <param name="cid">The context id, e.g. <see cref="ParentCid"/> or <see cref="AnyCid"/>.</param>
    /// <param name="port">The port, or <see cref="AnyPort"/>. Port 0 is accepted here, as the kernel's
    /// <c>sockaddr_vm</c> can hold it, but not in text: <see cref="Parse(string)"/> refuses <c>vsock://CID:0</c>.</param>
    public VsockEndPoint(uint cid, uint port)
    {
        Cid = cid;
        Port = port;
    }

    /// <summary>The context id.</summary>
    public uint Cid { get; }

    /// <summary>The port.</summary>
    public uint Port { get; }

    /// <summary>Always <see cref="AddressFamily.Unknown"/>; see the remarks on <see cref="VsockEndPoint"/>.</summary>
    public override AddressFamily AddressFamily => AddressFamily.Unknown;

    /// <summary>Writes this endpoint as a 16-byte <c>sockaddr_vm</c>.</summary>
    /// <returns>A socket address whose bytes are the <c>sockaddr_vm</c>.</returns>
    public override SocketAddress Serialize()
    {
        var address = new SocketAddress(AddressFamily.Unknown, SockaddrSize);
        Span<byte> bytes = address.Buffer.Span;
        bytes.Clear();
        BitConverter.TryWriteBytes(bytes, NativeAddressFamily);
        BitConverter.TryWriteBytes(bytes[4..], Port);
        BitConverter.TryWriteBytes(bytes[8..], Cid);
        return address;
    }

    /// <summary>Reads a <c>sockaddr_vm</c> produced by the kernel (for example by accept or getsockname).</summary>
    /// <param name="socketAddress">The raw address; its <see cref="SocketAddress.Family"/> is not consulted.</param>
    /// <returns>The endpoint the bytes describe.</returns>
    /// <exception cref="ArgumentException">The address is not 16 bytes long or its family field is not 40.</exception>
    public override EndPoint Create(SocketAddress socketAddress)
    {
        ArgumentNullException.ThrowIfNull(socketAddress);
        if (socketAddress.Size != SockaddrSize)
        {
            throw new ArgumentException(
                $"A sockaddr_vm is {SockaddrSize} bytes; got {socketAddress.Size}.", nameof(socketAddress));
        }

        ReadOnlySpan<byte> bytes = socketAddress.Buffer.Span[..SockaddrSize];
        ushort family = BitConverter.ToUInt16(bytes);
        if (family != NativeAddressFamily)
        {
            throw new ArgumentException(
                $"Expected address family {NativeAddressFamily} (AF_VSOCK); got {family}.", nameof(socketAddress));
        }

        return new VsockEndPoint(cid: BitConverter.ToUInt32(bytes[8..]), port: BitConverter.ToUInt32(bytes[4..]));
    }

    /// <summary>Parses <c>vsock://CID:PORT</c>.</summary>
    /// <param name="text">
    /// The text: CID is a decimal number or one of <c>any</c>, <c>parent</c> (3), <c>host</c> (2), <c>local</c> (1);
    /// PORT is a decimal number from 1 to 4294967294 or <c>any</c>. Scheme and names are case-insensitive.
    /// </param>
    /// <returns>The endpoint.</returns>
    /// <exception cref="FormatException">The text is not of that form; the message names the input (control characters
    /// escaped, a long input shortened) and what is wrong.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    public static VsockEndPoint Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text, out VsockEndPoint? endPoint, out string? error) ? endPoint : throw new FormatException(error);
    }

    /// <summary>Parses <c>vsock://CID:PORT</c> without throwing; see <see cref="Parse(string)"/>.</summary>
    /// <param name="text">The text to parse.</param>
    /// <param name="endPoint">The endpoint, when the text is valid.</param>
    /// <returns>Whether the text is valid.</returns>
    public static bool TryParse([NotNullWhen(true)] string? text, [NotNullWhen(true)] out VsockEndPoint? endPoint) =>
        TryParseReason(text, out endPoint, out _);

    /// <summary>Parses <c>vsock://CID:PORT</c> without throwing, saying why a text is not one; see <see cref="Parse(string)"/>.</summary>
    /// <param name="text">The text to parse.</param>
    /// <param name="endPoint">The endpoint, when the text is valid.</param>
    /// <param name="error">Otherwise, the message <see cref="Parse(string)"/> would throw: the text (control characters
    /// escaped, a long input shortened), what is wrong, and the accepted form, e.g. <c>invalid VSOCK endpoint
    /// 'vsock://3': the port is missing. Expected vsock://CID:PORT ...</c>.</param>
    /// <returns>Whether the text is valid.</returns>
    public static bool TryParse(
        [NotNullWhen(true)] string? text,
        [NotNullWhen(true)] out VsockEndPoint? endPoint,
        [NotNullWhen(false)] out string? error)
    {
        if (TryParseReason(text, out endPoint, out string? reason))
        {
            error = null;
            return true;
        }

        error = $"invalid VSOCK endpoint '{PrintableText.Shorten(text ?? string.Empty)}': {reason}. Expected {AcceptedForm}.";
        return false;
    }

    /// <summary>Parses <c>vsock://CID:PORT</c>, saying in <paramref name="reason"/> what is wrong (without the text),
    /// for a caller that builds its own message.</summary>
    internal static bool TryParseReason(
        [NotNullWhen(true)] string? text,
        [NotNullWhen(true)] out VsockEndPoint? endPoint,
        [NotNullWhen(false)] out string? reason)
    {
        endPoint = null;
        if (string.IsNullOrEmpty(text))
        {
            reason = "it is empty";
            return false;
        }

        if (!text.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            reason = "it does not start with vsock://";
            return false;
        }

        ReadOnlySpan<char> rest = text.AsSpan(Scheme.Length);
        int colon = rest.IndexOf(':');
        if (colon < 0)
        {
            reason = "the port is missing";
            return false;
        }

        if (!TryParseCid(rest[..colon], out uint cid))
        {
            string shown = PrintableText.Shorten(rest[..colon].ToString());
            reason = IsDigits(rest[..colon])
                ? $"the CID {shown} is out of range (0-4294967295)"
                : $"the CID '{shown}' is not a decimal number, any, parent, host or local";
            return false;
        }

        if (!TryParsePort(rest[(colon + 1)..], out uint port))
        {
            string shown = PrintableText.Shorten(rest[(colon + 1)..].ToString());
            reason = IsDigits(rest[(colon + 1)..])
                ? $"the port {shown} is out of range (1-4294967294, or any)"
                : $"the port '{shown}' is not a decimal number 1-4294967294 or any";
            return false;
        }

        endPoint = new VsockEndPoint(cid, port);
        reason = null;
        return true;
    }

    /// <summary>Formats as <c>vsock://CID:PORT</c>, writing <c>any</c> for <see cref="AnyCid"/> and <see cref="AnyPort"/>.</summary>
    /// <returns>The canonical text, which <see cref="Parse(string)"/> reads back to an equal endpoint for every port but
    /// 0 (which it refuses).</returns>
    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"{Scheme}{(Cid == AnyCid ? "any" : Cid.ToString(CultureInfo.InvariantCulture))}:{(Port == AnyPort ? "any" : Port.ToString(CultureInfo.InvariantCulture))}");

    /// <summary>Whether <paramref name="other"/> has the same CID and port.</summary>
    /// <param name="other">The endpoint to compare with.</param>
    /// <returns>Whether the two are equal.</returns>
    public bool Equals(VsockEndPoint? other) => other is not null && other.Cid == Cid && other.Port == Port;

    /// <summary>Whether <paramref name="obj"/> is a <see cref="VsockEndPoint"/> with the same CID and port.</summary>
    /// <param name="obj">The object to compare with.</param>
    /// <returns>Whether the two are equal.</returns>
    public override bool Equals(object? obj) => Equals(obj as VsockEndPoint);

    /// <summary>A hash of the CID and port.</summary>
    /// <returns>The hash code.</returns>
    public override int GetHashCode() => HashCode.Combine(Cid, Port);

    private static bool TryParseCid(ReadOnlySpan<char> text, out uint cid)
    {
        if (text.Equals("any", StringComparison.OrdinalIgnoreCase))
        {
            cid = AnyCid;
            return true;
        }

        if (text.Equals("parent", StringComparison.OrdinalIgnoreCase))
        {
            cid = ParentCid;
            return true;
        }

        if (text.Equals("host", StringComparison.OrdinalIgnoreCase))
        {
            cid = HostCid;
            return true;
        }

        if (text.Equals("local", StringComparison.OrdinalIgnoreCase))
        {
            cid = LocalCid;
            return true;
        }

        return uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out cid);
    }

    /// <summary>Whether <paramref name="text"/> is one or more ASCII digits (a number, valid or out of range).</summary>
    private static bool IsDigits(ReadOnlySpan<char> text) => !text.IsEmpty && !text.ContainsAnyExceptInRange('0', '9');

    private static bool TryParsePort(ReadOnlySpan<char> text, out uint port)
    {
        if (text.Equals("any", StringComparison.OrdinalIgnoreCase))
        {
            port = AnyPort;
            return true;
        }

        return uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port)
            && port is not 0 and not AnyPort;
    }
}
