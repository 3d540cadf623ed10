using System.Net.Sockets;
using Egress.Dns;
using Egress.Policy;
using Egress.Relay;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;
using Pipelines.Sockets.Unofficial;

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

    public async Task HandleAsync(Socket streamSocket, CancellationToken stopping, CancellationToken aborted)
    {
        var metrics = options.Metrics;
        var tunnel = RelayPipes.CreateConnection(streamSocket);
        SocketConnection? upstream = null;
        try
        {
            var request = await ReadRequestAsync(tunnel, aborted).ConfigureAwait(false);
            if (request is null)
            {
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
                destination, options.ConnectTimeout, options.Relay.TimeProvider, aborted).ConfigureAwait(false);
            if (socket is null)
            {
                GatewayLog.ConnectFailed(logger, destination, hint, status, detail);
                metrics?.Connection("failed", status.ToString());
                await AnswerAsync(tunnel, status, detail, aborted).ConfigureAwait(false);
                return;
            }

            upstream = RelayPipes.CreateConnection(socket);
            TunnelCodec.WriteResponse(tunnel.Output, new TunnelResponse(TunnelStatus.Ok));
            var flushed = await tunnel.Output.FlushAsync(aborted).ConfigureAwait(false);
            if (flushed.IsCompleted)
            {
                return;
            }

            GatewayLog.Connected(logger, destination, hint, decision);
            metrics?.Connection("allowed", decision.Reason.ToString());
            metrics?.RelayStarted();
            var result = await DuplexRelay.RunAsync(tunnel, upstream, options.Relay, aborted).ConfigureAwait(false);
            metrics?.RelayEnded(result.BytesAToB, result.BytesBToA, result.Duration, result.FirstCause);
            GatewayLog.Closed(logger, destination, result.BytesAToB, result.BytesBToA, result.FirstCause, result.Duration.TotalMilliseconds);
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or IOException or ConnectionResetException or ConnectionAbortedException)
        {
            GatewayLog.StreamFailed(logger, ex.Message);
            metrics?.TunnelError("stream_failed");
        }
        finally
        {
            using var closing = new CancellationTokenSource(CloseDeadline);
            await RelayPipes.CloseAsync(tunnel, closing.Token).ConfigureAwait(false);
            if (upstream is not null)
            {
                await RelayPipes.CloseAsync(upstream, closing.Token).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Answers Ok, then serves the stream's framed queries until the enclave closes it or a stop begins.</summary>
    private async Task ServeDnsAsync(SocketConnection tunnel, CancellationToken stopping, CancellationToken aborted)
    {
        TunnelCodec.WriteResponse(tunnel.Output, new TunnelResponse(TunnelStatus.Ok));
        var flushed = await tunnel.Output.FlushAsync(aborted).ConfigureAwait(false);
        if (flushed.IsCompleted)
        {
            return;
        }

        GatewayLog.DnsStreamOpened(logger, string.Join(", ", dnsUpstreams.Upstreams));
        var answerer = new UpstreamDnsAnswerer(policy, dnsUpstreams, options.Metrics, logger, aborted);
        await DnsFramedConnection.ServeAsync(
            tunnel, answerer, MaxDnsInFlight, Timeout.InfiniteTimeSpan, options.Relay.TimeProvider, logger, stopping, aborted).ConfigureAwait(false);
        GatewayLog.DnsStreamClosed(logger);
    }

    private async Task<TunnelRequest?> ReadRequestAsync(SocketConnection tunnel, CancellationToken aborted)
    {
        using var deadline = new CancellationTokenSource(options.HeaderTimeout, options.Relay.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, aborted);
        TunnelReadResult result;
        TunnelRequest request;
        try
        {
            (result, request) = await TunnelCodec.ReadRequestAsync(tunnel.Input, linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
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

    private static async Task AnswerAsync(SocketConnection tunnel, TunnelStatus status, string? detail, CancellationToken aborted)
    {
        TunnelCodec.WriteResponse(tunnel.Output, new TunnelResponse(status, detail));
        await tunnel.Output.FlushAsync(aborted).ConfigureAwait(false);
    }
}
