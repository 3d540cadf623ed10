using System.Net;
using System.Net.Sockets;
using Egress.Interception;
using Egress.Policy;
using Egress.Relay;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;
using Pipelines.Sockets.Unofficial;

namespace Egress.Proxy;

/// <summary>
/// One redirected connection: original destination, policy, tunnel stream, parent's status, relay. Never reads the
/// application's bytes before the tunnel is up (server-speaks-first protocols work): the application's socket is
/// only wrapped for relaying after the parent answered Ok.
/// </summary>
internal sealed class ProxyConnectionHandler(EgressProxyOptions options, EgressPolicy policy, ILogger logger)
{
    private static readonly TimeSpan CloseDeadline = TimeSpan.FromSeconds(30);

    public async Task HandleAsync(Socket client, CancellationToken aborted)
    {
        var original = OriginalDestination.Read(client);
        if (original.Status != OriginalDestinationStatus.Redirected)
        {
            ProxyLog.NotRedirected(logger, client.RemoteEndPoint, original.Status, original.Detail);
            options.Metrics?.Connection("failed", "NotRedirected");
            RelayPipes.Reset(client);
            return;
        }

        var destination = original.Destination!;
        var decision = policy.CheckAddress(destination.Address);
        if (!decision.IsAllowed)
        {
            ProxyLog.Denied(logger, destination, decision);
            options.Metrics?.Connection("denied", decision.Reason.ToString());
            RelayPipes.Reset(client);
            return;
        }

        var tunnel = await OpenTunnelAsync(destination, HostHintFor(decision), aborted).ConfigureAwait(false);
        if (tunnel is null)
        {
            RelayPipes.Reset(client);
            return;
        }

        client.NoDelay = true;
        var app = RelayPipes.CreateConnection(client);
        ProxyLog.Allowed(logger, destination, decision);
        var metrics = options.Metrics;
        metrics?.Connection("allowed", decision.Reason.ToString());
        metrics?.RelayStarted();
        var result = await DuplexRelay.RunAsync(app, tunnel, options.Relay, aborted).ConfigureAwait(false);
        metrics?.RelayEnded(result.BytesAToB, result.BytesBToA, result.Duration, result.FirstCause);
        using (var closing = new CancellationTokenSource(CloseDeadline))
        {
            await Task.WhenAll(
                RelayPipes.CloseAsync(app, closing.Token).AsTask(),
                RelayPipes.CloseAsync(tunnel, closing.Token).AsTask()).ConfigureAwait(false);
        }

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

    /// <summary>Connects a tunnel stream, sends the request and waits for Ok; null (after logging why) otherwise.</summary>
    private async Task<SocketConnection?> OpenTunnelAsync(IPEndPoint destination, string? hint, CancellationToken aborted)
    {
        using var timeout = new CancellationTokenSource(options.StatusTimeout, options.Relay.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, aborted);
        Socket socket;
        try
        {
            socket = await options.Tunnel.ConnectAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            ProxyLog.Stopping(logger, destination);
            options.Metrics?.Connection("failed", "Stopping");
            return null;
        }
        catch (OperationCanceledException)
        {
            ProxyLog.TunnelConnectTimedOut(logger, destination, options.Tunnel.ToString(), options.StatusTimeout.TotalMilliseconds);
            Failed("TunnelTimedOut", "connect_timeout");
            return null;
        }
        catch (Exception ex) when (ex is SocketException or IOException)
        {
            ProxyLog.TunnelUnavailable(logger, destination, options.Tunnel.ToString(), ex.Message);
            Failed("TunnelUnavailable", "unavailable");
            return null;
        }

        var tunnel = RelayPipes.CreateConnection(socket);
        try
        {
            TunnelCodec.WriteRequest(tunnel.Output, TunnelRequest.ForTcp(destination, hint));
            await tunnel.Output.FlushAsync(linked.Token).ConfigureAwait(false);
            var (result, response) = await TunnelCodec.ReadResponseAsync(tunnel.Input, linked.Token).ConfigureAwait(false);
            if (result == TunnelReadResult.Complete && response.Status == TunnelStatus.Ok)
            {
                return tunnel;
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
        catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or ConnectionResetException or ConnectionAbortedException)
        {
            ProxyLog.TunnelUnavailable(logger, destination, options.Tunnel.ToString(), ex.Message);
            Failed("TunnelUnavailable", "unavailable");
        }

        RelayPipes.Reset(socket);
        tunnel.Dispose();
        return null;
    }

    private void Failed(string reason, string tunnelError)
    {
        options.Metrics?.Connection("failed", reason);
        options.Metrics?.TunnelError(tunnelError);
    }
}
