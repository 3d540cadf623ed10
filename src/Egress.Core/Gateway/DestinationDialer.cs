using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Egress.Sockets;
using Egress.Tunnel;

namespace Egress.Gateway;

/// <summary>Connects to a destination with a timeout and maps the outcome to the tunnel status the enclave gets.</summary>
internal static class DestinationDialer
{
    /// <summary>Connects <paramref name="socket"/> to <paramref name="destination"/>; throws <see cref="SocketException"/>
    /// on failure and <see cref="OperationCanceledException"/> when cancelled.</summary>
    public delegate ValueTask Connect(Socket socket, IPEndPoint destination, CancellationToken cancellationToken);

    /// <param name="destination">Where to connect.</param>
    /// <param name="timeout">How long the connect may take (answered TimedOut after it).</param>
    /// <param name="timeProvider">The clock of the timeout.</param>
    /// <param name="aborted">Ends the attempt at once (thrown).</param>
    /// <param name="connect">How the socket is connected; null for <see cref="SocketReadiness.ConnectWithoutContextAsync"/>.</param>
    /// <param name="sameThreadAs">A socket whose epoll thread serves the new socket's waits too (<see cref="SocketReadiness.ShareEngine"/>): the tunnel stream it is dialled for; null for the default.</param>
    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public static async ValueTask<(Socket? Socket, TunnelStatus Status, string? Detail)> ConnectAsync(
        IPEndPoint destination, TimeSpan timeout, TimeProvider timeProvider, CancellationToken aborted, Connect? connect = null, Socket? sameThreadAs = null)
    {
        // One source for both ends of the attempt (no linked source per connection): the timeout, and the abort, which
        // cancels it through a registration on the long-lived abort token (its nodes are reused, not allocated anew).
        if (destination.Address.IsIPv4MappedToIPv6)
        {
            // The policy decides ::ffff:a.b.c.d as a.b.c.d; an IPv6 socket (IPV6_V6ONLY) cannot reach it.
            destination = new IPEndPoint(destination.Address.MapToIPv4(), destination.Port);
        }

        using var deadline = new CancellationTokenSource(timeout, timeProvider);
        using var onAbort = aborted.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), deadline);
        Socket? socket = null;
        try
        {
            // Created inside the try: without IPv6, socket() fails and the enclave must still get an answer.
            socket = new Socket(destination.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            SocketUrgentData.KeepInLine(socket);
            SocketReset.ResetIfProcessEnds(socket); // closed with FIN when its relay ends (RelayedStream.Dispose)
            if (sameThreadAs is not null)
            {
                SocketReadiness.ShareEngine(socket, sameThreadAs);
            }
            // Inline: the gateway's status and relay start follow on the epoll thread, no hand-off per connection.
            // Our own connect by default: the runtime's would give the socket its asynchronous context for its life.
            await (connect is null
                ? SocketReadiness.ConnectWithoutContextAsync(socket, destination, deadline.Token, inline: true)
                : connect(socket, destination, deadline.Token)).ConfigureAwait(false);

            return (socket, TunnelStatus.Ok, null);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !aborted.IsCancellationRequested)
        {
            socket?.Dispose();
            return (null, TunnelStatus.TimedOut, $"no answer within {timeout.TotalMilliseconds:F0} ms");
        }
        catch (SocketException ex)
        {
            socket?.Dispose();
            return (null, StatusFor(ex.SocketErrorCode), ex.Message);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            socket?.Dispose();
            throw new OperationCanceledException(aborted); // the abort's, as with a token linked to it
        }
        catch
        {
            socket?.Dispose();
            throw;
        }
    }

    public static TunnelStatus StatusFor(SocketError error) => error switch
    {
        SocketError.ConnectionRefused => TunnelStatus.ConnectionRefused,
        SocketError.NetworkUnreachable or SocketError.HostUnreachable or SocketError.NetworkDown
            or SocketError.HostDown or SocketError.AddressNotAvailable => TunnelStatus.Unreachable,
        SocketError.TimedOut => TunnelStatus.TimedOut,
        _ => TunnelStatus.Failure,
    };
}

/// <summary>TCP keepalive for a destination socket: the kernel probes an idle connection and, when a peer stops
/// answering, fails the next read with ETIMEDOUT (<see cref="SocketError.TimedOut"/>).</summary>
/// <param name="Idle">Idle time before the first probe (TCP_KEEPIDLE, whole seconds); zero leaves keepalive off.</param>
/// <param name="Interval">Time between unanswered probes (TCP_KEEPINTVL, whole seconds).</param>
/// <param name="Probes">Unanswered probes that end the connection (TCP_KEEPCNT).</param>
internal readonly record struct TcpKeepAlive(TimeSpan Idle, TimeSpan Interval, int Probes)
{
    public static TcpKeepAlive Off => default;

    public bool Enabled => Idle > TimeSpan.Zero;

    /// <summary>The seconds after which a silent peer is given up: idle + probes × interval.</summary>
    public double DeadAfterSeconds => Idle.TotalSeconds + Probes * Interval.TotalSeconds;

    public void Apply(Socket socket)
    {
        if (!Enabled)
        {
            return;
        }

        // .NET takes seconds for all three on Linux (setsockopt SOL_TCP TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT).
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, Math.Max(1, (int)Idle.TotalSeconds));
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, Math.Max(1, (int)Interval.TotalSeconds));
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, Math.Max(1, Probes));
    }
}
