using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Egress.Connections;

namespace Egress.Tunnel;

/// <summary>
/// The enclave side of the tunnel as a library call: opens a tunnel stream to the parent (egress-host or a
/// <see cref="Gateway.TunnelGateway"/>), asks it to dial a TCP destination and waits for its status. On success the
/// caller gets a connected socket that now carries the destination's bytes, exactly what egress-enclave's proxy relays
/// for a redirected application. The wire format is docs/tunnel-protocol.md: this public API speaks version 1 (raw
/// bytes after the status); egress-enclave's proxy uses version 2 (framed, with each direction's end in a frame), which
/// this package does not expose.
/// </summary>
/// <remarks>
/// Thread-safe: one client can open any number of streams concurrently; each stream is independent. Failures are
/// results (<see cref="TunnelConnectResult.Error"/>), never exceptions, except the caller's own cancellation.
/// A version 1 stream carries no cause for its end: the parent closes it with FIN whether the destination closed or
/// reset, and when the parent aborts it at its stop, so a transfer cut short can read as a clean end of stream here
/// (docs/tunnel-protocol.md, "Payload after <c>Ok</c>"). Rely on the application protocol to detect truncation (TLS
/// close_notify, HTTP lengths), as there.
/// </remarks>
public sealed class TunnelClient
{
    /// <summary>Why a new stream failed when the parent closed it before any byte of its status.</summary>
    internal const string ClosedUnanswered =
        "the parent closed the stream before answering (egress-host stopped, crashed or is restarting, or closed it unanswered at its stream limit: its log says which)";

    /// <summary>Why a new stream failed when the parent reset it before any byte of its status (after the socket error).</summary>
    internal const string ResetUnanswered =
        "the parent reset the stream before answering (egress-host stopped or crashed, or reset it unanswered at its stream limit: its log says which)";

    /// <summary>A bad answer's detail: the defect's name, then what it means, so that a peer that is not an Egress
    /// parent (an HTTP server answering <c>HTTP/1.1 400</c>) does not read as the status UnsupportedVersion.</summary>
    // A library trial read "StatusTimedOut" with no detail: which parent, and how long was waited.
    private string TunnelTimedOutDetail => string.Create(
        CultureInfo.InvariantCulture, $"opening a tunnel stream to {Parent} did not finish within {StatusTimeout.TotalMilliseconds:0} ms");

    private string StatusTimedOutDetail => string.Create(
        CultureInfo.InvariantCulture, $"the tunnel stream to {Parent} was open, but no status came within {StatusTimeout.TotalMilliseconds:0} ms");

    internal static string BadResponseDetail(TunnelReadResult result) => result switch
    {
        TunnelReadResult.UnsupportedVersion =>
            "UnsupportedVersion: the answer does not start with a tunnel protocol version this client reads (1 or 2), or an Ok came in another version than asked: the peer is not an Egress parent, or speaks another protocol on this endpoint",
        TunnelReadResult.UnknownStatus =>
            "UnknownStatus: the answer's status byte is not a status of the tunnel protocol: the peer is not an Egress parent, or a newer one",
        TunnelReadResult.TruncatedStream =>
            "TruncatedStream: the peer closed the stream in the middle of its answer",
        _ => result.ToString(),
    };

    /// <summary>The longest status timeout a timer can wait (int.MaxValue ms).</summary>
    private static readonly TimeSpan MaxStatusTimeout = TimeSpan.FromMilliseconds(int.MaxValue);

    private readonly TimeProvider _timeProvider;
    private readonly Func<CancellationToken, ValueTask<Socket>> _connect;
    private readonly Func<CancellationToken, ValueTask<Socket>> _connectForRelay;
    private readonly TunnelVersionProbe _versions;
    private readonly TunnelStreamPool? _pool;

    /// <summary>Creates a client for the parent at <paramref name="parent"/>.</summary>
    /// <param name="parent">Where the parent accepts tunnel streams, e.g. <c>vsock://3:4433</c>.</param>
    /// <param name="statusTimeout">
    /// How long connecting the stream plus waiting for the parent's status may take in total; 10 s when null. Above
    /// zero and at most int.MaxValue ms.
    /// </param>
    /// <param name="timeProvider">The clock for <paramref name="statusTimeout"/>; the system clock when null.</param>
    /// <exception cref="ArgumentNullException"><paramref name="parent"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="statusTimeout"/> is zero or negative (as
    /// <see cref="Timeout.InfiniteTimeSpan"/> is), or above int.MaxValue ms (<see cref="TimeSpan.MaxValue"/>: a timer
    /// cannot wait that long).</exception>
    public TunnelClient(TunnelEndpoint parent, TimeSpan? statusTimeout = null, TimeProvider? timeProvider = null)
        : this(parent, statusTimeout, timeProvider, connect: null)
    {
    }

    /// <summary>The public constructor with the stream's connect injectable (tests: a fake that fails or hangs), and the
    /// pool of clean version 2 streams <see cref="ConnectFramedAsync"/> rents from and <see cref="Return"/> fills (null: none
    /// are reused; the caller owns and disposes the pool).</summary>
    internal TunnelClient(
        TunnelEndpoint parent, TimeSpan? statusTimeout, TimeProvider? timeProvider, Func<CancellationToken, ValueTask<Socket>>? connect, TunnelStreamPool? pool = null)
    {
        _pool = pool;
        ArgumentNullException.ThrowIfNull(parent);
        var timeout = statusTimeout ?? TimeSpan.FromSeconds(10);
        if (timeout <= TimeSpan.Zero || timeout > MaxStatusTimeout)
        {
            // Above int.MaxValue ms the timer cannot be set: every connect would throw, where failures are results.
            throw new ArgumentOutOfRangeException(nameof(statusTimeout), timeout, "must be above zero and at most int.MaxValue ms (about 24.8 days)");
        }

        Parent = parent;
        StatusTimeout = timeout;
        _timeProvider = timeProvider ?? TimeProvider.System;
        _connect = connect ?? parent.ConnectAsync;
        _connectForRelay = connect ?? parent.ConnectForRelayAsync;
        StreamsNonBlocking = connect is null;
        _versions = new TunnelVersionProbe(_timeProvider);
    }

    /// <summary>Gets where tunnel streams are opened.</summary>
    public TunnelEndpoint Parent { get; }

    /// <summary>Gets how long connecting a stream plus waiting for the parent's status may take.</summary>
    public TimeSpan StatusTimeout { get; }

    /// <summary>Whether every stream <see cref="ConnectFramedAsync"/> hands out is in non-blocking mode: connected by
    /// <see cref="TunnelEndpoint.ConnectForRelayAsync"/> (which sets the mode first), or rented from the pool, which
    /// holds only streams of such connects. False when a test injected the connect.</summary>
    internal bool StreamsNonBlocking { get; }

    /// <summary>
    /// Opens a tunnel stream, asks the parent to dial <paramref name="destination"/> and waits for its status.
    /// </summary>
    /// <param name="destination">The TCP destination (IPv4 or IPv6, port 1-65535).</param>
    /// <param name="hostName">
    /// The DNS name the address was learned from, sent as the request's host hint; null for none. The parent logs it,
    /// and when it has not learned the address itself (it restarted, say) it resolves this name through its DNS
    /// upstreams and allows the address only if its answer contains it (docs/tunnel-protocol.md, "TCP connect body").
    /// At most 253 bytes of ASCII letters, digits, '-', '.' and '_'.
    /// </param>
    /// <param name="cancellationToken">Cancels the attempt; the stream is closed.</param>
    /// <returns>
    /// The result: on <see cref="TunnelConnectError.None"/> a connected <see cref="TunnelConnectResult.Socket"/> the
    /// caller owns (dispose it) and any destination bytes that arrived with the status; otherwise why not, with the
    /// stream already closed.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="destination"/> is null.</exception>
    /// <exception cref="ArgumentException">Port 0, or <paramref name="hostName"/> is not a valid host hint.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<TunnelConnectResult> ConnectAsync(IPEndPoint destination, string? hostName, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (destination.Port == 0)
        {
            throw new ArgumentException("the destination port must be 1-65535", nameof(destination));
        }

        if (hostName is not null && !TunnelHostHint.IsValid(hostName.AsSpan()))
        {
            throw new ArgumentException("a host hint is at most 253 bytes of ASCII letters, digits, '-', '.' and '_'", nameof(hostName));
        }

        return await ConnectRequestAsync(TunnelRequest.ForTcp(destination, hostName), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Like <see cref="ConnectAsync(IPEndPoint, string?, CancellationToken)"/> but in version 2 (framed stream, END frames,
    /// a new connection id) unless the parent speaks only version 1: a parent that answers a version 2 request with
    /// UnsupportedVersion is asked again in version 1, and for <see cref="TunnelVersionProbe.ReprobeInterval"/> after that
    /// every stream is version 1. The result's <see cref="TunnelConnectResult.Version"/> says which the stream speaks and
    /// <see cref="TunnelConnectResult.VersionNews"/> what this connect learned about the parent (for the caller's log).
    /// </summary>
    /// <param name="destination">The TCP destination (IPv4 or IPv6, port 1-65535).</param>
    /// <param name="hostName">The host hint, as for the public overload; already validated by the caller.</param>
    /// <param name="earlyData">The application's first bytes, sent as a DATA frame with every version 2 request (a
    /// stale pooled stream's retry included; the parent answers the status before it relays them, so a stream that
    /// died before its status relayed none); never with a version 1 request, whose caller relays them itself. Empty: none.</param>
    /// <param name="cancellationToken">Cancels the attempt; the stream is closed.</param>
    /// <remarks>Completes on an epoll thread (<see cref="Sockets.SocketReadiness.WaitReadableInlineAsync(Socket, bool)"/>) when the status
    /// had to be waited for: the proxy's set-up goes on there to its relay without a hand-off to the thread pool per
    /// connection; it neither blocks nor closes a socket another wait holds before its relay waits.</remarks>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<TunnelConnectResult> ConnectFramedAsync(
        IPEndPoint destination, string? hostName, ReadOnlyMemory<byte> earlyData, CancellationToken cancellationToken)
    {
        var request = TunnelRequest.ForTcp(destination, hostName);
        if (_versions.NextVersion == TunnelCodec.Version)
        {
            return await ConnectRequestAsync(request, cancellationToken, inline: true).ConfigureAwait(false);
        }

        var version2 = request.AsVersion2(TunnelConnectionId.New());
        TunnelConnectResult framed;
        if (_pool?.TryRent() is { } pooled)
        {
            (framed, bool stale) = await ConnectRequestAsync(version2, pooled, cancellationToken, inline: true, earlyData).ConfigureAwait(false);
            framed = stale
                ? (await ConnectRequestAsync(version2, cancellationToken, inline: true, earlyData).ConfigureAwait(false)).With(reused: false, retriedStale: true)
                : framed.Reused ? framed : framed.With(reused: true, retriedStale: false);
        }
        else
        {
            framed = await ConnectRequestAsync(version2, cancellationToken, inline: true, earlyData).ConfigureAwait(false);
        }

        if (framed is { Error: TunnelConnectError.Refused, Status: TunnelStatus.UnsupportedVersion, ResponseVersion: TunnelCodec.Version })
        {
            // An egress-host from before version 2: it answered in version 1 and closed the stream.
            TunnelVersionNews news = _versions.RefusedVersion2();
            var plain = await ConnectRequestAsync(request, cancellationToken, inline: true).ConfigureAwait(false);
            return plain.With(news);
        }

        return framed.Error == TunnelConnectError.None ? framed.With(_versions.AcceptedVersion2()) : framed;
    }

    /// <summary>
    /// Puts a version 2 stream whose relay ended clean (both directions END(FIN), nothing read past the END) back in the
    /// pool for the next connection, or closes it when there is no pool or the pool is full or disposed.
    /// </summary>
    internal void Return(Socket stream)
    {
        if (_pool is null || !_pool.TryReturn(stream))
        {
            stream.Dispose();
        }
    }

    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<TunnelConnectResult> ConnectRequestAsync(
        TunnelRequest request, CancellationToken cancellationToken, bool inline = false, ReadOnlyMemory<byte> earlyData = default) =>
        (await ConnectRequestAsync(request, rented: null, cancellationToken, inline, earlyData).ConfigureAwait(false)).Result;

    /// <summary>
    /// Sends <paramref name="request"/> on a new stream, or on <paramref name="rented"/> (a pooled stream), and reads the
    /// status. Stale: the rented stream failed the send, or ended or was reset before any status byte: the parent closed
    /// it while it was idle (its idle limit, or a restart), so it never acted on the request and the caller may send it
    /// again on a new stream; the rented stream is closed.
    /// </summary>
    /// <param name="request">The request to send.</param>
    /// <param name="rented">A pooled stream to send it on; null: a new stream.</param>
    /// <param name="cancellationToken">Cancels the attempt (thrown); the status timeout is a result.</param>
    /// <param name="earlyData">A DATA frame's payload to send right behind the request, in the same send (version 2 only).</param>
    /// <param name="inline">True for the internal callers (<see cref="ConnectFramedAsync"/>), whose streams only the
    /// proxy's relay reads and writes: the status wait continues on the epoll thread, and a new stream is connected
    /// without the runtime's asynchronous context (<see cref="TunnelEndpoint.ConnectForRelayAsync"/>). False for the
    /// public <see cref="ConnectAsync"/>, whose socket keeps the runtime's contract (<see cref="Socket.Connected"/>, which
    /// a <see cref="NetworkStream"/> needs, over VSOCK too).</param>
    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<(TunnelConnectResult Result, bool Stale)> ConnectRequestAsync(
        TunnelRequest request, Socket? rented, CancellationToken cancellationToken, bool inline, ReadOnlyMemory<byte> earlyData = default)
    {
        using var timeout = new CancellationTokenSource(StatusTimeout, _timeProvider);
        using var linked = cancellationToken.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), timeout);
        Socket socket;
        if (rented is not null)
        {
            socket = rented;
        }
        else
        {
            try
            {
                socket = await (inline ? _connectForRelay : _connect)(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                cancellationToken.ThrowIfCancellationRequested();
                return (TunnelConnectResult.Failed(TunnelConnectError.TunnelTimedOut, TunnelTimedOutDetail), false);
            }
            catch (Exception ex) when (ex is SocketException or IOException)
            {
                return (TunnelConnectResult.Failed(TunnelConnectError.TunnelUnavailable, AcceptFailure.Message(ex)), false);
            }
        }

        bool anyReceived = false;
        try
        {
            var (result, response, following, received) = await TunnelHandshake.RequestCountingAsync(socket, request, timeout.Token, inline, earlyData).ConfigureAwait(false);
            anyReceived = received;
            if (rented is not null && result == TunnelReadResult.TruncatedStream && !received)
            {
                return (TunnelConnectResult.Failed(TunnelConnectError.TunnelUnavailable, "the pooled stream was closed by the parent"), true);
            }

            if (result == TunnelReadResult.TruncatedStream && !received)
            {
                // Not a bad answer: none came (a trial read "invalid answer from the parent (TruncatedStream)" when egress-host was killed).
                return (TunnelConnectResult.Failed(TunnelConnectError.TunnelUnavailable, ClosedUnanswered), false);
            }

            if (result == TunnelReadResult.Complete && response.Status == TunnelStatus.Ok && response.Version != request.Version)
            {
                // Ok must echo the request's version: the payload that follows is in that version.
                result = TunnelReadResult.UnsupportedVersion;
            }

            if (result == TunnelReadResult.Complete && response.Status == TunnelStatus.Ok)
            {
                var connected = socket;
                socket = null!;
                return (new TunnelConnectResult(TunnelConnectError.None, TunnelStatus.Ok, response.Detail, connected, following)
                {
                    Version = request.Version,
                    ConnectionId = request.ConnectionId,
                    Reused = rented is not null, // set here, not by a copy per reused connection
                }, false);
            }

            return (result == TunnelReadResult.Complete
                ? new TunnelConnectResult(TunnelConnectError.Refused, response.Status, response.Detail, null, default)
                {
                    ResponseVersion = response.Version,
                    ConnectionId = request.ConnectionId, // the parent logs its refusal with it: the enclave's line and audit record must too
                }
                : new TunnelConnectResult(TunnelConnectError.BadResponse, null, BadResponseDetail(result), null, default) { ReadResult = result }, false);
        }
        catch (OperationCanceledException)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return (TunnelConnectResult.Failed(TunnelConnectError.StatusTimedOut, StatusTimedOutDetail), false);
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
        {
            // On a pooled stream before any status byte: the send failed (EPIPE) or the parent's close reset it.
            string detail = rented is null && !anyReceived && ex is SocketException { SocketErrorCode: SocketError.ConnectionReset }
                ? $"{AcceptFailure.Message(ex)}: {ResetUnanswered}"
                : AcceptFailure.Message(ex);
            return (TunnelConnectResult.Failed(TunnelConnectError.TunnelUnavailable, detail), rented is not null && !anyReceived);
        }
        finally
        {
            if (socket is not null)
            {
                Sockets.SocketReset.Reset(socket); // an abort: the parent stops dialing or relaying at once
            }
        }
    }
}
