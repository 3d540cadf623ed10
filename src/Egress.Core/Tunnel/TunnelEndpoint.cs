using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Egress.Configuration;
using Egress.Diagnostics;
using Egress.Sockets;
using Egress.Vsock;

namespace Egress.Tunnel;

/// <summary>
/// Where tunnel streams go: a VSOCK, Unix domain socket or TCP address, parsed from one string.
/// </summary>
/// <remarks>
/// Accepted forms (scheme case-insensitive):
/// <list type="bullet">
/// <item><c>vsock://CID:PORT</c> — CID a decimal number or <c>any</c>, <c>parent</c> (3), <c>host</c> (2),
/// <c>local</c> (1); PORT a decimal number 1-4294967294 or <c>any</c>. Canonical: <c>vsock://3:4433</c>,
/// <c>vsock://any:4433</c>.</item>
/// <item><c>unix:/path</c> — an absolute path of at most 107 UTF-8 bytes. The URI spelling <c>unix:///path</c>
/// is accepted too and means the same; the canonical form is <c>unix:/path</c>. Relative paths,
/// <c>unix://host/path</c> and abstract socket names are rejected.</item>
/// <item><c>tcp://HOST:PORT</c> — HOST an IPv4 literal in dotted-quad form or an IPv6 literal in brackets
/// (<c>tcp://[::1]:4433</c>); PORT 1-65535. Host names are rejected: nothing resolves names inside an enclave.</item>
/// </list>
/// <see cref="ToString"/> returns the canonical form, which <see cref="Parse"/> reads back to an equal endpoint: two
/// endpoints are equal when their canonical forms are (<c>unix:///run/e.sock</c> equals <c>unix:/run/e.sock</c>,
/// <c>vsock://parent:4433</c> equals <c>vsock://3:4433</c>).
/// </remarks>
public sealed class TunnelEndpoint : IEquatable<TunnelEndpoint>
{
    private const string AcceptedForms = "vsock://CID:PORT, unix:/path, tcp://HOST:PORT (HOST an IP literal, IPv6 in brackets)";
    private const string VsockScheme = "vsock://";
    private const string UnixScheme = "unix:";
    private const string TcpScheme = "tcp://";
    private const int MaxUnixPathBytes = 107;

    private readonly string _text;

    private TunnelEndpoint(TunnelTransport transport, EndPoint endPoint, string text)
    {
        Transport = transport;
        EndPoint = endPoint;
        _text = text;
    }

    /// <summary>The kind of socket this endpoint needs.</summary>
    public TunnelTransport Transport { get; }

    /// <summary>
    /// The address: a <see cref="VsockEndPoint"/>, <see cref="UnixDomainSocketEndPoint"/> or <see cref="IPEndPoint"/>,
    /// according to <see cref="Transport"/>.
    /// </summary>
    public EndPoint EndPoint { get; }

    /// <summary>Parses one of the accepted forms listed on <see cref="TunnelEndpoint"/>.</summary>
    /// <param name="text">The text, e.g. <c>vsock://3:4433</c>, <c>unix:/run/egress.sock</c> or <c>tcp://127.0.0.1:4433</c>.</param>
    /// <returns>The endpoint.</returns>
    /// <exception cref="FormatException">The text is malformed; the message names it (control characters escaped, a long
    /// input shortened), what is wrong, and the accepted forms.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    public static TunnelEndpoint Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text, out TunnelEndpoint? endpoint, out string? error) ? endpoint : throw new FormatException(error);
    }

    /// <summary>Parses one of the accepted forms listed on <see cref="TunnelEndpoint"/> without throwing.</summary>
    /// <param name="text">The text to parse.</param>
    /// <param name="endpoint">The endpoint, when the text is valid.</param>
    /// <param name="error">Otherwise, a message naming the text, what is wrong and the accepted forms.</param>
    /// <returns>Whether the text is valid.</returns>
    public static bool TryParse(
        [NotNullWhen(true)] string? text,
        [NotNullWhen(true)] out TunnelEndpoint? endpoint,
        [NotNullWhen(false)] out string? error)
    {
        string? reason;
        if (string.IsNullOrEmpty(text))
        {
            endpoint = null;
            reason = "it is empty";
        }
        else if (text.StartsWith(VsockScheme, StringComparison.OrdinalIgnoreCase))
        {
            endpoint = VsockEndPoint.TryParseReason(text, out VsockEndPoint? vsock, out reason)
                ? new TunnelEndpoint(TunnelTransport.Vsock, vsock, vsock.ToString())
                : null;
        }
        else if (text.StartsWith(UnixScheme, StringComparison.OrdinalIgnoreCase))
        {
            endpoint = TryParseUnix(text.AsSpan(UnixScheme.Length), out reason);
        }
        else if (text.StartsWith(TcpScheme, StringComparison.OrdinalIgnoreCase))
        {
            endpoint = TryParseTcp(text[TcpScheme.Length..], out reason);
        }
        else
        {
            endpoint = null;
            int colon = text.IndexOf(':', StringComparison.Ordinal);
            string? scheme = colon > 0 ? text[..colon] : null;
            reason = scheme is null ? "it has no scheme"
                // "vsock:3:4433", "tcp:127.0.0.1:4433": a known scheme without its "//" (a trial was told 'vsock' is not supported).
                : (scheme.Equals("vsock", StringComparison.OrdinalIgnoreCase) || scheme.Equals("tcp", StringComparison.OrdinalIgnoreCase))
                    ? $"'{scheme}' needs '//' after its colon: write '{scheme}://{PrintableText.Shorten(text[(colon + 1)..].TrimStart('/'))}'"
                : $"the scheme '{PrintableText.Shorten(scheme)}' is not supported";
        }

        error = endpoint is null ? $"invalid tunnel endpoint '{PrintableText.Shorten(text ?? string.Empty)}': {reason}. Accepted forms: {AcceptedForms}." : null;
        return endpoint is not null;
    }

    /// <summary>
    /// Creates an unconnected, unbound socket of the matching family: VSOCK (see <see cref="VsockSocket.Create"/>),
    /// Unix stream, or TCP with <see cref="Socket.NoDelay"/> set.
    /// </summary>
    /// <returns>A new socket that the caller owns.</returns>
    public Socket CreateSocket()
    {
        switch (Transport)
        {
            case TunnelTransport.Vsock:
                return VsockSocket.Create();
            case TunnelTransport.Unix:
                return new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            default:
                var socket = new Socket(EndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                socket.NoDelay = true;
                return socket;
        }
    }

    /// <summary>Creates a socket and connects it to this endpoint.</summary>
    /// <param name="cancellationToken">Cancels the connection attempt.</param>
    /// <returns>The connected socket, which the caller owns. On failure the socket is disposed and the error thrown.</returns>
    /// <exception cref="SocketException">The connect failed (e.g. refused, unreachable; for <c>unix:</c>, no socket at
    /// the path: the runtime reports ENOENT as <see cref="SocketError.AddressNotAvailable"/>, "Cannot assign requested
    /// address", so the message then names the missing path instead).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public ValueTask<Socket> ConnectAsync(CancellationToken cancellationToken) => ConnectStreamAsync(forRelay: false, cancellationToken);

    /// <summary>
    /// As <see cref="ConnectAsync(CancellationToken)"/>, for a stream that only a relay reads and writes: connected with
    /// <see cref="SocketReadiness.ConnectWithoutContextAsync"/>, so the socket never gets the runtime's asynchronous context
    /// (about 450 B per idle connection). The runtime then does not see the socket as connected
    /// (<see cref="Socket.Connected"/> false, no <see cref="Socket.RemoteEndPoint"/>) nor as non-blocking, which its
    /// descriptor is, so such a socket is never for <see cref="NetworkStream"/> or the runtime's synchronous calls.
    /// </summary>
    /// <inheritdoc cref="ConnectAsync(CancellationToken)" path="/param"/>
    /// <inheritdoc cref="ConnectAsync(CancellationToken)" path="/returns"/>
    /// <inheritdoc cref="ConnectAsync(CancellationToken)" path="/exception"/>
    internal ValueTask<Socket> ConnectForRelayAsync(CancellationToken cancellationToken) => ConnectStreamAsync(forRelay: true, cancellationToken);

    private async ValueTask<Socket> ConnectStreamAsync(bool forRelay, CancellationToken cancellationToken)
    {
        Socket socket = CreateSocket();
        try
        {
            await (forRelay
                ? SocketReadiness.ConnectWithoutContextAsync(socket, EndPoint, cancellationToken)
                : SocketReadiness.ConnectAsync(socket, EndPoint, cancellationToken)).ConfigureAwait(false);
            return socket;
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressNotAvailable && EndPoint is UnixDomainSocketEndPoint unix
            && !Path.Exists(unix.ToString()))
        {
            socket.Dispose();
            throw new SocketException((int)SocketError.AddressNotAvailable, $"no socket at {unix} (ENOENT: egress-host creates it when it listens and removes it when a stop begins; is it running with this tunnel endpoint, or stopping?)");
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused)
        {
            // A library trial read "Connection refused" alone after egress-host was killed (its socket file left behind).
            socket.Dispose();
            throw new SocketException((int)SocketError.ConnectionRefused, EndPoint is UnixDomainSocketEndPoint
                ? $"nothing accepts connections on {this} (ECONNREFUSED: the socket file is there but no process listens on it; an egress-host that was killed leaves it behind, and removes it when it starts again)"
                : $"nothing accepts connections on {this} (ECONNREFUSED: is egress-host running with this tunnel endpoint?)");
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.SocketError && EndPoint is VsockEndPoint)
        {
            // A library-consumer trial got "Unknown socket error" alone: connect(2) answered ENODEV, which the runtime
            // does not name, on a machine with no VSOCK transport.
            socket.Dispose();
            throw new SocketException((int)SocketError.SocketError, $"{ex.Message} connecting to {this} (an error .NET does not name: connect(2) answers ENODEV when no VSOCK transport reaches that CID, on a machine that is neither a Nitro enclave nor a VM with a virtio-vsock device, or to this machine's own CID without the vsock_loopback module)");
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Creates a socket, binds it to this endpoint and listens.
    /// </summary>
    /// <remarks>
    /// For <c>unix:</c>, a socket file left at the path by a process that is gone is deleted first. A path that
    /// exists but is not a socket (a regular file, a directory, a symbolic link) is never deleted, and neither is a
    /// socket that a live process still accepts on: both raise <see cref="IOException"/>. (Liveness is checked by
    /// connecting once; a live listener sees that connection close without data.) Disposing the returned socket
    /// removes the file again. For <c>tcp:</c>, SO_REUSEADDR (alone, not SO_REUSEPORT) is set so a restart can rebind at once while a
    /// second listener on the same address still fails.
    /// </remarks>
    /// <param name="backlog">The maximum length of the pending connection queue.</param>
    /// <returns>The listening socket, which the caller owns.</returns>
    /// <exception cref="IOException">The Unix path is occupied by something this method must not delete, or its
    /// directory does not exist (this method creates the socket, not its directory).</exception>
    /// <exception cref="SocketException">bind or listen failed (for example, address in use).</exception>
    public Socket Listen(int backlog = 512)
    {
        if (EndPoint is UnixDomainSocketEndPoint unix)
        {
            // bind(2) answers ENOENT, which the runtime reports as "Cannot assign requested address" (EADDRNOTAVAIL).
            string? directory = Path.GetDirectoryName(unix.ToString());
            if (!string.IsNullOrEmpty(directory) && !Directory.Exists(directory))
            {
                throw new IOException($"Cannot listen on {this}: the directory '{directory}' does not exist; create it first (only the socket is created here).");
            }

            RemoveStaleSocketFile(unix);
        }

        Socket socket = CreateSocket();
        try
        {
            if (Transport == TunnelTransport.Tcp)
            {
                SocketAddressReuse.Set(socket); // not SO_REUSEPORT: a second listener on the port is an error
            }

            socket.Bind(EndPoint);
            socket.Listen(backlog);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The canonical form of this endpoint, e.g. <c>vsock://3:4433</c>, <c>unix:/run/egress.sock</c> or <c>tcp://[::1]:4433</c>.</summary>
    /// <returns>Text that <see cref="Parse"/> reads back to the same endpoint.</returns>
    public override string ToString() => _text;

    /// <summary>Whether <paramref name="other"/> has the same canonical form (<see cref="ToString"/>): the same
    /// transport and address.</summary>
    /// <param name="other">The other endpoint, or null.</param>
    /// <returns>True when equal.</returns>
    public bool Equals(TunnelEndpoint? other) => other is not null && string.Equals(_text, other._text, StringComparison.Ordinal);

    /// <summary>Whether <paramref name="obj"/> is a <see cref="TunnelEndpoint"/> with the same canonical form.</summary>
    /// <param name="obj">The other object, or null.</param>
    /// <returns>True when equal.</returns>
    public override bool Equals(object? obj) => obj is TunnelEndpoint other && Equals(other);

    /// <summary>A hash of the canonical form.</summary>
    /// <returns>The hash.</returns>
    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(_text);

    private void RemoveStaleSocketFile(UnixDomainSocketEndPoint endPoint)
    {
        string path = endPoint.ToString();
        if (!TunnelEndpointSocketFile.Exists(path, out bool isSocket))
        {
            return;
        }

        if (!isSocket)
        {
            throw new IOException($"Cannot listen on {this}: '{path}' exists and is not a socket; refusing to delete it.");
        }

        using (var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            // Non-blocking: a live listener with a full backlog answers EAGAIN instead of stalling us.
            probe.Blocking = false;
            try
            {
                probe.Connect(endPoint);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
            {
                File.Delete(path);
                return;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
                // Someone is listening; fall through.
            }
        }

        throw new IOException($"Cannot listen on {this}: another process is accepting connections on '{path}'.");
    }

    private static TunnelEndpoint? TryParseUnix(ReadOnlySpan<char> rest, out string? reason)
    {
        if (rest.StartsWith("//", StringComparison.Ordinal))
        {
            // unix:///path is the URI spelling of unix:/path; unix://host/path names a host, which means nothing here.
            rest = rest[2..];
            if (!rest.IsEmpty && !rest.StartsWith('/'))
            {
                reason = "a unix: endpoint has no host; write unix:/path or unix:///path";
                return null;
            }
        }

        if (rest.IsEmpty)
        {
            reason = "the path is missing";
            return null;
        }

        if (!rest.StartsWith('/'))
        {
            reason = "the path must be absolute";
            return null;
        }

        if (rest.Contains('\0'))
        {
            reason = "the path contains a NUL character";
            return null;
        }

        string path = rest.ToString();
        int bytes = Encoding.UTF8.GetByteCount(path);
        if (bytes > MaxUnixPathBytes)
        {
            reason = string.Create(CultureInfo.InvariantCulture, $"the path is {bytes} bytes long; a Unix socket path holds at most {MaxUnixPathBytes}");
            return null;
        }

        reason = null;
        return new TunnelEndpoint(TunnelTransport.Unix, new UnixDomainSocketEndPoint(path), UnixScheme + path);
    }

    // HOST:PORT is the one IP endpoint grammar of the product (EndPointText), the same as the listen addresses.
    private static TunnelEndpoint? TryParseTcp(string rest, out string? reason)
    {
        if (!EndPointText.TryParseListen(rest, out IPEndPoint? endPoint, out reason))
        {
            return null;
        }

        return new TunnelEndpoint(TunnelTransport.Tcp, endPoint, TcpScheme + endPoint.ToString());
    }
}
