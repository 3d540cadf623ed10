using System.Net;
using System.Net.Sockets;
using Egress.Interception;
using Egress.Policy;
using Egress.Relay;
using Egress.Sockets;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;

namespace Egress.Proxy;

/// <summary>
/// One redirected connection: original destination, policy, tunnel stream, parent's status, relay. Never reads the
/// application's bytes before the tunnel is up (server-speaks-first protocols work): the application's socket is
/// only read by the relay after the parent answered Ok.
/// </summary>
internal sealed class ProxyConnectionHandler(EgressProxyOptions options, EgressPolicy policy, ILogger logger)
{
    public async Task HandleAsync(Socket client, CancellationToken aborted)
    {
        var original = OriginalDestination.Read(client);
        if (original.Status != OriginalDestinationStatus.Redirected)
        {
            ProxyLog.NotRedirected(logger, client.RemoteEndPoint, original.Status, original.Detail);
            options.Metrics?.Connection("failed", "NotRedirected");
            SocketReset.Reset(client);
            return;
        }

        var destination = original.Destination!;
        var decision = policy.CheckAddress(destination.Address);
        if (!decision.IsAllowed)
        {
            ProxyLog.Denied(logger, destination, decision);
            options.Metrics?.Connection("denied", decision.Reason.ToString());
            SocketReset.Reset(client);
            return;
        }

        client.NoDelay = true; // before the tunnel exists: nothing can leak if it throws
        var (tunnel, following) = await OpenTunnelAsync(destination, HostHintFor(decision), aborted).ConfigureAwait(false);
        if (tunnel is null)
        {
            SocketReset.Reset(client);
            return;
        }

        ProxyLog.Allowed(logger, destination, decision);
        var metrics = options.Metrics;
        metrics?.Connection("allowed", decision.Reason.ToString());
        metrics?.RelayStarted();
        RelayResult result;
        try
        {
            result = await SocketRelay.RunAsync(client, tunnel, ReadOnlyMemory<byte>.Empty, following, options.Relay, aborted).ConfigureAwait(false);
        }
        finally
        {
            client.Dispose();
            tunnel.Dispose();
        }

        metrics?.RelayEnded(result.BytesAToB, result.BytesBToA, result.Duration, result.FirstCause);

        ProxyLog.Closed(logger, destination, result.BytesAToB, result.BytesBToA, result.FirstCause, result.Duration.TotalMilliseconds);
    }

    /// <summary>
    /// The name an address was learned from, as the request's host hint. A learned name the hint format cannot
    /// carry (a wildcard entry matches any label bytes) is left out rather than failing the connection.
    /// </summary>
    internal static string? HostHintFor(PolicyDecision decision) =>
        decision.Reason is DecisionReason.Learned or DecisionReason.LearnedInGrace
            && decision.Subject is { } name && TunnelHostHint.IsValid(name.AsSpan())
            ? name
            : null;

    /// <summary>
    /// Connects a tunnel stream, sends the request and waits for Ok; null (after logging why) otherwise. The bytes that
    /// arrived after the status in the same receive are the destination's first bytes, for the application.
    /// </summary>
    private async Task<(Socket? Tunnel, ReadOnlyMemory<byte> Following)> OpenTunnelAsync(IPEndPoint destination, string? hint, CancellationToken aborted)
    {
        using var timeout = new CancellationTokenSource(options.StatusTimeout, options.Relay.TimeProvider);
        using var linked = aborted.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), timeout);
        Socket socket;
        try
        {
            socket = await options.Tunnel.ConnectAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            ProxyLog.Stopping(logger, destination);
            options.Metrics?.Connection("failed", "Stopping");
            return (null, default);
        }
        catch (OperationCanceledException)
        {
            ProxyLog.TunnelConnectTimedOut(logger, destination, options.Tunnel.ToString(), options.StatusTimeout.TotalMilliseconds);
            Failed("TunnelTimedOut", "connect_timeout");
            return (null, default);
        }
        catch (Exception ex) when (ex is SocketException or IOException)
        {
            ProxyLog.TunnelUnavailable(logger, destination, options.Tunnel.ToString(), ex.Message);
            Failed("TunnelUnavailable", "unavailable");
            return (null, default);
        }

        try
        {
            var (result, response, following) = await TunnelHandshake.RequestAsync(
                socket, TunnelRequest.ForTcp(destination, hint), timeout.Token).ConfigureAwait(false);
            if (result == TunnelReadResult.Complete && response.Status == TunnelStatus.Ok)
            {
                return (socket, following);
            }

            if (result == TunnelReadResult.Complete)
            {
                ProxyLog.ParentRefused(logger, destination, response.Status, response.Detail ?? string.Empty);
                options.Metrics?.Connection(response.Status == TunnelStatus.DeniedByPolicy ? "denied" : "failed", response.Status.ToString());
            }
            else
            {
                ProxyLog.BadParentResponse(logger, destination, result);
                Failed("BadParentResponse", "bad_response");
            }
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            ProxyLog.Stopping(logger, destination);
            options.Metrics?.Connection("failed", "Stopping");
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            ProxyLog.ParentTimedOut(logger, destination, options.StatusTimeout.TotalMilliseconds);
            Failed("ParentTimedOut", "status_timeout");
        }
        catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            ProxyLog.TunnelUnavailable(logger, destination, options.Tunnel.ToString(), ex.Message);
            Failed("TunnelUnavailable", "unavailable");
        }

        SocketReset.Reset(socket);
        return (null, default);
    }

    private void Failed(string reason, string tunnelError)
    {
        options.Metrics?.Connection("failed", reason);
        options.Metrics?.TunnelError(tunnelError);
    }
}
