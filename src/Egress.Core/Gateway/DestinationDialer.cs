using System.Net;
using System.Net.Sockets;
using Egress.Tunnel;

namespace Egress.Gateway;

/// <summary>Connects to a destination with a timeout and maps the outcome to the tunnel status the enclave gets.</summary>
internal static class DestinationDialer
{
    public static async Task<(Socket? Socket, TunnelStatus Status, string? Detail)> ConnectAsync(
        IPEndPoint destination, TimeSpan timeout, TimeProvider timeProvider, CancellationToken aborted)
    {
        using var deadline = new CancellationTokenSource(timeout, timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, aborted);
        Socket? socket = null;
        try
        {
            // Created inside the try: without IPv6, socket() fails and the enclave must still get an answer.
            socket = new Socket(destination.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(destination, linked.Token).ConfigureAwait(false);
            return (socket, TunnelStatus.Ok, null);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            socket?.Dispose();
            return (null, TunnelStatus.TimedOut, $"no answer within {timeout.TotalMilliseconds:F0} ms");
        }
        catch (SocketException ex)
        {
            socket?.Dispose();
            return (null, StatusFor(ex.SocketErrorCode), ex.Message);
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
