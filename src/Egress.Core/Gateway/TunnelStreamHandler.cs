using System.Net.Sockets;
using Egress.Connections;
using Egress.Dns;
using Egress.Dns.Upstream;
using Egress.Policy;
using Egress.Relay;
using Egress.Sockets;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;

namespace Egress.Gateway;

/// <summary>
/// One tunnel stream: request under a header timeout, then for TCP: policy re-check, dial, status, relay; for
/// DNS: status Ok, then framed queries answered through the upstream resolvers (see <see cref="UpstreamDnsAnswerer"/>)
/// until the enclave closes the stream or the gateway is stopping (queries in flight are answered first). Every
/// failure that can be answered gets a status before the stream closes; nothing here throws to the accept loop.
/// </summary>
internal sealed class TunnelStreamHandler(TunnelGatewayOptions options, EgressPolicy policy, DnsUpstreamClient dnsUpstreams, ILogger logger)
{
    /// <summary>The most queries of one tunnel DNS stream answered at once; further frames wait.</summary>
    private const int MaxDnsInFlight = 1024;

    private static readonly TimeSpan CloseDeadline = TimeSpan.FromSeconds(30);

    private readonly TcpKeepAlive keepAlive = new(options.KeepAliveIdle, options.KeepAliveInterval, options.KeepAliveProbes);

    /// <param name="streamSocket">The accepted stream.</param>
    /// <param name="listener">The gateway's listener: its live streams (this one included) and its stop signal.</param>
    /// <param name="aborted">Cancelled when the stop aborts live streams.</param>
    public async Task HandleAsync(Socket streamSocket, ConnectionListener listener, CancellationToken aborted)
    {
        var stopping = listener.Stopping;
        var metrics = options.Metrics;
        var tunnel = streamSocket;
        Socket? upstream = null;
        try
        {
            var request = await ReadRequestAsync(tunnel, aborted).ConfigureAwait(false);
            if (request is null)
            {
                return;
            }

            if (options.MaxStreams > 0 && listener.ActiveConnections > options.MaxStreams)
            {
                // Answered after the request is read, so that the enclave gets the reason rather than a reset stream.
                var target = request.Value.Destination is { } to ? $" to {to}" : string.Empty;
                GatewayLog.StreamLimit(logger, request.Value.Kind, target, options.MaxStreams);
                metrics?.TunnelError("stream_limit");
                await AnswerAsync(tunnel, TunnelStatus.Failure, $"parent: stream limit reached (host.max_streams = {options.MaxStreams})", aborted).ConfigureAwait(false);
                return;
            }

            if (request.Value.Kind == TunnelRequestKind.Dns)
            {
                await ServeDnsAsync(tunnel, stopping, aborted).ConfigureAwait(false);
                return;
            }

            if (request.Value.Kind != TunnelRequestKind.TcpConnect)
            {
                GatewayLog.Unsupported(logger, request.Value.Kind);
                metrics?.TunnelError("unsupported_kind");
                await AnswerAsync(tunnel, TunnelStatus.UnsupportedKind, $"{request.Value.Kind} streams are not served by this gateway", aborted).ConfigureAwait(false);
                return;
            }

            var destination = request.Value.Destination!;
            var hint = GatewayLog.HintText(request.Value.HostHint);
            var decision = policy.CheckAddress(destination.Address);
            if (!decision.IsAllowed)
            {
                GatewayLog.Denied(logger, destination, hint, decision);
                metrics?.Connection("denied", decision.Reason.ToString());
                await AnswerAsync(tunnel, TunnelStatus.DeniedByPolicy, "parent: " + decision.ToString(), aborted).ConfigureAwait(false);
                return;
            }

            var (socket, status, detail) = await DestinationDialer.ConnectAsync(
                destination, options.ConnectTimeout, keepAlive, options.Relay.TimeProvider, aborted).ConfigureAwait(false);
            if (socket is null)
            {
                GatewayLog.ConnectFailed(logger, destination, hint, status, detail);
                metrics?.Connection("failed", status.ToString());
                await AnswerAsync(tunnel, status, detail, aborted).ConfigureAwait(false);
                return;
            }

            upstream = socket;
            await TunnelHandshake.SendResponseAsync(tunnel, new TunnelResponse(TunnelStatus.Ok), aborted).ConfigureAwait(false);
            GatewayLog.Connected(logger, destination, hint, decision);
            metrics?.Connection("allowed", decision.Reason.ToString());
            metrics?.RelayStarted();
            var result = await SocketRelay.RunAsync(tunnel, upstream, options.Relay, aborted).ConfigureAwait(false);
            metrics?.RelayEnded(result.BytesAToB, result.BytesBToA, result.Duration, result.FirstCause);
            GatewayLog.Closed(logger, destination, result.BytesAToB, result.BytesBToA, result.FirstCause, result.Duration.TotalMilliseconds);
            if (result.FirstCause == RelayShutdownCause.BReadError && keepAlive.Enabled
                && result.Error is SocketException { SocketErrorCode: SocketError.TimedOut } or IOException { InnerException: SocketException { SocketErrorCode: SocketError.TimedOut } })
            {
                GatewayLog.KeepAliveTimedOut(logger, destination, keepAlive.Probes, keepAlive.DeadAfterSeconds);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or IOException or ObjectDisposedException)
        {
            GatewayLog.StreamFailed(logger, ex.Message);
            metrics?.TunnelError("stream_failed");
        }
        finally
        {
            TunnelHandshake.Close(tunnel);
            upstream?.Dispose();
        }
    }

    /// <summary>Answers Ok, then serves the stream's framed queries until the enclave closes it or a stop begins.</summary>
    private async Task ServeDnsAsync(Socket streamSocket, CancellationToken stopping, CancellationToken aborted)
    {
        await TunnelHandshake.SendResponseAsync(streamSocket, new TunnelResponse(TunnelStatus.Ok), aborted).ConfigureAwait(false);
        GatewayLog.DnsStreamOpened(logger, string.Join(", ", dnsUpstreams.Upstreams));
        var answerer = new UpstreamDnsAnswerer(policy, dnsUpstreams, options.Metrics, logger, aborted);
        var tunnel = SocketPipe.Create(streamSocket);
        try
        {
            await DnsFramedConnection.ServeAsync(
                tunnel, answerer, MaxDnsInFlight, Timeout.InfiniteTimeSpan, options.Relay.TimeProvider, logger, stopping, aborted).ConfigureAwait(false);
        }
        finally
        {
            using var closing = new CancellationTokenSource(CloseDeadline);
            await SocketPipe.CloseAsync(tunnel, closing.Token).ConfigureAwait(false);
        }

        GatewayLog.DnsStreamClosed(logger);
    }

    private async Task<TunnelRequest?> ReadRequestAsync(Socket tunnel, CancellationToken aborted)
    {
        TunnelReadResult result;
        TunnelRequest request;
        try
        {
            using var deadline = new CancellationTokenSource(options.HeaderTimeout, options.Relay.TimeProvider);
            using var linked = aborted.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), deadline);
            (result, request) = await TunnelHandshake.ReadRequestAsync(tunnel, deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
        {
            GatewayLog.HeaderTimeout(logger, options.HeaderTimeout.TotalMilliseconds);
            options.Metrics?.TunnelError("header_timeout");
            await AnswerAsync(tunnel, TunnelStatus.BadRequest, "no complete request within the header timeout", aborted).ConfigureAwait(false);
            return null;
        }

        switch (result)
        {
            case TunnelReadResult.Complete:
                return request;
            case TunnelReadResult.TruncatedStream:
                GatewayLog.ClosedBeforeRequest(logger);
                return null;
            default:
                var status = TunnelCodec.StatusFor(result);
                GatewayLog.BadRequest(logger, result, status);
                options.Metrics?.TunnelError("bad_request");
                await AnswerAsync(tunnel, status, $"invalid request: {result}", aborted).ConfigureAwait(false);
                return null;
        }
    }

    private static async Task AnswerAsync(Socket tunnel, TunnelStatus status, string? detail, CancellationToken aborted) =>
        await TunnelHandshake.SendResponseAsync(tunnel, new TunnelResponse(status, detail), aborted).ConfigureAwait(false);
}
