using System.Buffers;
using Egress.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Egress.Audit;
using Egress.Connections;
using Egress.Dns;
using Egress.Dns.Upstream;
using Egress.Policy;
using Egress.Relay;
using Egress.Sockets;
using Egress.Tls;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;

namespace Egress.Gateway;

/// <summary>
/// One tunnel stream: request under a header timeout, then for TCP: policy re-check, dial, status, relay; for
/// DNS: status Ok, then framed queries answered through the upstream resolvers (see <see cref="UpstreamDnsAnswerer"/>)
/// until the enclave closes the stream, it stays idle or trickles a frame, or the gateway is stopping (queries in
/// flight are answered first), within the bounds of <see cref="DnsStreamLimits"/>. Every
/// path ends in one <see cref="GatewayStreamResult"/>, from which <see cref="CompleteAsync"/> logs, counts and answers
/// the status before the stream closes; nothing here throws to the accept loop.
/// </summary>
/// <param name="options">The gateway's settings.</param>
/// <param name="policy">The parent's allowlist.</param>
/// <param name="dnsUpstreams">The resolvers DNS streams are answered from.</param>
/// <param name="logger">Where each stream's outcome is logged.</param>
/// <param name="connect">Connects a destination socket (null in production: <see cref="SocketReadiness.ConnectWithoutContextAsync"/>; a fake in tests, e.g. one that never completes, to reach the connect timeout).</param>
/// <param name="parentAddresses">The parent's own addresses, denied unless an entry names the single address; null:
/// none are known (tests that need no such check).</param>
internal sealed class TunnelStreamHandler(
    TunnelGatewayOptions options, EgressPolicy policy, DnsUpstreamClient dnsUpstreams, ILogger logger, DestinationDialer.Connect? connect = null,
    ParentAddresses? parentAddresses = null)
{
    private static readonly TimeSpan CloseDeadline = TimeSpan.FromSeconds(30);

    private readonly DnsStreamOptions _dnsStreams = DnsStreamLimits.StreamOptions(options.Relay.TimeProvider, options.Metrics);

    /// <summary>Gets or sets (once, when the gateway starts) the streams kept for DNS and denial reports; null: none kept.</summary>
    internal StreamReserve? Reserve { get; set; }

    private readonly LogRateLimit _dnsOverloadLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 321);
    private readonly LogRateLimit _dnsFailedLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 256, LogRateLimit.FailureLinesPerInterval);
    private readonly LogRateLimit _dnsDeniedLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 254, LogRateLimit.FailureLinesPerInterval);

    // The limit refusals' lines (event 211), one rate limit per request kind, so that a flood of connections at the
    // stream limit never holds back the line of a DNS stream refused at its own limit.
    private readonly LogRateLimit _tcpLimitLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 211);
    private readonly LogRateLimit _dnsLimitLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 211);
    private readonly LogRateLimit _reportLimitLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 211);
    private readonly LogRateLimit _dnsGiveUpLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 218);

    // The DNS streams open, at most DnsStreamLimits.MaxStreams: at the limit a new one takes the idlest one's place.
    private readonly DnsStreamSlots _dnsSlots = new(options.Relay.TimeProvider);

    private readonly HintRelearner _relearner = new(policy, dnsUpstreams, logger);

    private readonly DenialReportReceiver _denialReports = new(options, logger);

    // Keepalive goes on a destination socket a second or two after its connect, once the connection has shown it lives
    // that long: most relayed connections end sooner and never pay its four system calls.
    private readonly DeferredKeepAlive _keepAlive = new(
        new TcpKeepAlive(options.KeepAliveIdle, options.KeepAliveInterval, options.KeepAliveProbes), options.Relay.TimeProvider);

    /// <summary>
    /// How long a stream whose connection ended clean may wait for its next request (docs/tunnel-protocol.md, "Stream
    /// reuse"): 60 s, three times the enclave's pool expiry (<see cref="TunnelStreamPool.DefaultIdleExpiry"/>), so the
    /// enclave normally closes an idle stream first; past it, or at a stop, the stream is closed quietly
    /// (<see cref="TunnelGatewayOptions.IdleBetweenRequests"/>).
    /// </summary>
    internal static readonly TimeSpan DefaultIdleBetweenRequests = TimeSpan.FromSeconds(60);

    /// <param name="streamSocket">The accepted stream.</param>
    /// <param name="listener">The gateway's listener: its live streams (this one included) and its stop signal.</param>
    /// <param name="aborted">Cancelled when the stop aborts live streams.</param>
    /// <returns>The outcome of the stream's last request, already logged, counted and answered.</returns>
    /// <remarks>
    /// A version 2 connection that ended clean (<see cref="TunnelStreamPool.EndedClean"/>) leaves the stream open for the
    /// next request, which the same loop serves exactly as the first (logged, audited and counted alike); the listener
    /// counts the stream once, however many requests it carries.
    /// </remarks>
    public async Task<GatewayStreamResult> HandleAsync(Socket streamSocket, ConnectionListener listener, CancellationToken aborted)
    {
        var tunnel = streamSocket;
        uint? cid = options.Audit is null ? null : options.PeerCid(streamSocket); // read once, while the stream is open
        try
        {
            ReadOnlyMemory<byte> received = ReadOnlyMemory<byte>.Empty;
            bool reused = false; // a relay ran on the stream before: it left the stream non-blocking
            while (true)
            {
                // The long wait (the relay) is awaited here, in no layer of its own: deciding, dialling and answering
                // the request (OpenAsync, pooled) hold nothing for the relay's whole life, and what the relay's end
                // needs is one small object (RelayedStream).
                var opened = await OpenAsync(tunnel, listener, received, reused, aborted).ConfigureAwait(false);
                GatewayStreamResult result;
                if (opened.Done is { } done)
                {
                    result = done;
                }
                else
                {
                    // A learned address stays allowed while this connection is open, whatever the answer's TTL.
                    using var relayed = opened.Relayed!;
                    result = Relayed(relayed, await relayed.Relay.ConfigureAwait(false));
                }

                // Set up on an epoll thread (NextRequestAsync, the dial) or on the accepting thread (a new stream's
                // first request, ConnectionListener.HandlersOnAcceptThread) and refused or failed there: its lines and
                // status go from the pool, where a logger that blocks (the caller's choice) stalls no socket's wake-ups.
                // (A relayed connection's end is already on the pool.) Unless the process's loggers never block
                // (RelayOptions.EndOnEpollThread, as both hosts run): then the relayed connection's end stays on its
                // thread, and so do its lines, the answer to a refusal and the wait for the stream's next request.
                await SocketReadiness.LeaveEpollThreadUnless(options.Relay.EndOnEpollThread);

                await CompleteAsync(tunnel, result, aborted, cid).ConfigureAwait(false);
                if (result.Relay is not { } relay || !TunnelStreamPool.EndedClean(relay) || result.Request.Version != TunnelCodec.Version2
                    || listener.Stopping.IsCancellationRequested || aborted.IsCancellationRequested)
                {
                    return result;
                }

                if (await NextRequestAsync(tunnel, relay.TunnelAfterEnd, listener.Stopping, aborted).ConfigureAwait(false) is not { } next)
                {
                    return result;
                }

                received = next;
                reused = true;
                options.Metrics?.TunnelStreamReused();
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or IOException or ObjectDisposedException)
        {
            await SocketReadiness.LeaveEpollThread();
            var failed = GatewayStreamResult.Failed(ex.Message);
            Record(failed, cid);
            return failed;
        }
        finally
        {
            // An epoll thread closes no socket another wait may hold (WaitReadableInlineAsync says why); the stream's
            // own wait is over here, but an abort may be resetting it. (The destination's close after a clean relay may
            // stay on the epoll thread, RelayOptions.EndOnEpollThread: both its directions ended, no wait holds it.)
            await SocketReadiness.LeaveEpollThread();

            TunnelHandshake.Close(tunnel);
        }
    }

    /// <summary>
    /// Answers a stream the listener refused (beyond <c>host.max_streams</c> or out of descriptors): its request is
    /// read under the header timeout so that the enclave gets the reason as a Failure status rather than a reset stream.
    /// </summary>
    /// <param name="streamSocket">The refused stream; the listener closes it afterwards.</param>
    /// <param name="reason">Why it was refused, naming the limit.</param>
    /// <param name="aborted">Cancelled when the stop aborts live streams.</param>
    public Task HandleRefusedAsync(Socket streamSocket, string reason, CancellationToken aborted) =>
        AnswerRefusalAsync(streamSocket, reason, GatewayStreamResult.StreamLimitOf, aborted);

    /// <summary>Answers a stream whose VSOCK peer no <c>[[host.enclaves]]</c> entry maps, as <see cref="HandleRefusedAsync"/>
    /// answers one beyond a limit: its request is read, and the enclave gets the reason as a Failure status.</summary>
    /// <param name="streamSocket">The refused stream; closed afterwards.</param>
    /// <param name="reason">Why, naming the CID.</param>
    /// <param name="aborted">Cancelled when the stop aborts live streams.</param>
    public Task HandlePeerRefusedAsync(Socket streamSocket, string reason, CancellationToken aborted) =>
        AnswerRefusalAsync(streamSocket, reason, GatewayStreamResult.PeerRefusedOf, aborted);

    private async Task AnswerRefusalAsync(Socket streamSocket, string reason, Func<TunnelRequest, string, GatewayStreamResult> refusal, CancellationToken aborted)
    {
        // A peer refused on the accepting thread (TunnelGatewayOptions.HandlersOnAcceptThread): its lines, status and
        // close go from the pool, as a refusal's do from an epoll thread. (The listener's refusals arrive there already.)
        await SocketReadiness.LeaveEpollThread();
        try
        {
            var (read, request, _) = await ReadRequestAsync(streamSocket, ReadOnlyMemory<byte>.Empty, aborted).ConfigureAwait(false);
            await CompleteAsync(streamSocket, read ?? refusal(request, reason), aborted).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or IOException or ObjectDisposedException)
        {
            Record(GatewayStreamResult.Failed(ex.Message));
        }
        finally
        {
            TunnelHandshake.Close(streamSocket);
        }
    }

    /// <summary>
    /// Waits for the next request on a stream whose connection ended clean: its first bytes, read with the END frame
    /// (<paramref name="afterEnd"/>) or within <see cref="TunnelGatewayOptions.IdleBetweenRequests"/>. Null when the stream is closed instead:
    /// the enclave closed or reset it, it stayed idle, or a stop began; a normal end, logged at Debug only.
    /// </summary>
    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<ReadOnlyMemory<byte>?> NextRequestAsync(Socket tunnel, ReadOnlyMemory<byte> afterEnd, CancellationToken stopping, CancellationToken aborted)
    {
        if (!afterEnd.IsEmpty)
        {
            return afterEnd;
        }

        using var idle = new CancellationTokenSource(options.IdleBetweenRequests, options.Relay.TimeProvider);
        using var onStop = stopping.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), idle);
        using var onAbort = aborted.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), idle);
        byte[]? head = null;
        string end;
        try
        {
            // The enclave sends its next request when an application connects again, not right after the END frames:
            // wait first rather than receive into nothing (EAGAIN), one system call per connection. Inline: the next
            // connection is read, checked and dialled on the epoll thread that saw its request, as the dial's own wait
            // and the relay's start already are, with no hand-off to the thread pool per connection; DecideAsync and
            // HandleAsync hand what may block (a DNS stream, a re-resolution, a close; log lines of a refusal unless the
            // process's loggers never block, RelayOptions.EndOnEpollThread) back to it.
            await SocketReadiness.WaitReadableInlineAsync(tunnel, idle.Token, drained: true).ConfigureAwait(false);

            // Rented once the stream is readable (an idle stream holds no buffer): a whole request and its early data in
            // one receive. What came is copied out: the relay (a server-name check's reader) may hold it past the set-up.
            head = ArrayPool<byte>.Shared.Rent(TunnelHandshake.RequestReceiveSize);
            int read = await SocketReadiness.ReceiveAsync(tunnel, head, idle.Token).ConfigureAwait(false);
            if (read > 0)
            {
                return head.AsSpan(0, read).ToArray();
            }

            end = "closed by the enclave";
        }
        catch (OperationCanceledException)
        {
            end = stopping.IsCancellationRequested || aborted.IsCancellationRequested ? "stopping" : $"idle for {options.IdleBetweenRequests.TotalSeconds:0.###} s";
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            end = $"reset by the enclave ({ex.Message})";
        }
        finally
        {
            if (head is not null)
            {
                ArrayPool<byte>.Shared.Return(head);
            }
        }

        await SocketReadiness.LeaveEpollThread(); // woken by the enclave's close: the line, and the close after it, from the pool

        GatewayLog.IdleStreamClosed(logger, end);
        return null;
    }

    /// <summary>
    /// What a request comes to before a destination is dialled: its outcome already (<see cref="Done"/>: a DNS stream
    /// served, a denial, a bad request), or the allowed TCP connection to dial, with the hold that keeps its learned
    /// address allowed (the caller disposes it when the connection ends).
    /// </summary>
    private readonly record struct StreamDecision(
        GatewayStreamResult? Done, TunnelRequest Request, IPEndPoint? Destination, ReadOnlyMemory<byte> Following, PolicyDecision Decision, AddressHold? Hold)
    {
        public static implicit operator StreamDecision(GatewayStreamResult done) => new(done, default, null, default, default, null);
    }

    /// <summary>Reads the request and decides it (serving a DNS stream to its end); a TCP connection allowed comes back
    /// undialled, for <see cref="OpenAsync"/>.</summary>
    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<StreamDecision> DecideAsync(Socket tunnel, ConnectionListener listener, ReadOnlyMemory<byte> received, bool reused, CancellationToken aborted)
    {
        var (read, request, following) = await ReadRequestAsync(tunnel, received, aborted).ConfigureAwait(false);
        if (read is { } failed)
        {
            return failed;
        }

        if (request.Kind != TunnelRequestKind.TcpConnect && !following.IsEmpty)
        {
            // Only a connection's frames may follow a request before its status (a reused stream's pipelined bytes).
            return GatewayStreamResult.Failed($"{following.Length} bytes followed a {request.Kind} request before its status");
        }

        if (request.Kind == TunnelRequestKind.Dns)
        {
            await SocketReadiness.LeaveEpollThread(); // a DNS stream is served for its whole life: not on an epoll thread

            int maxDnsStreams = DnsStreamLimits.MaxStreams(listener.Admission?.Limit);
            if (_dnsSlots.TryEnter(maxDnsStreams, out DnsStreamSlot? gaveUp) is not { } slot)
            {
                return GatewayStreamResult.StreamLimitOf(request, DnsStreamLimits.RefusalReason(maxDnsStreams, listener.Admission?.LimitText()));
            }

            if (gaveUp is not null && _dnsGiveUpLines.TryEnter(out long heldBack))
            {
                GatewayLog.DnsStreamGivenUp(logger, DnsStreamLimits.RefusalReason(maxDnsStreams, listener.Admission?.LimitText()), gaveUp.GivenUpText, heldBack);
            }

            DnsStreamEnd end;
            try
            {
                end = await ServeDnsAsync(tunnel, slot, listener.Stopping, aborted).ConfigureAwait(false);
            }
            finally
            {
                _dnsSlots.Exit(slot);
                slot.Dispose();
            }

            return GatewayStreamResult.DnsServed(request, slot.GivenUp && end.Reason == DnsStreamEndReason.Stopping && !listener.Stopping.IsCancellationRequested
                ? new DnsStreamEnd(DnsStreamEndReason.GivenUp)
                : end);
        }

        if (request.Kind == TunnelRequestKind.DenialReport)
        {
            await SocketReadiness.LeaveEpollThread(); // its lines: not on an epoll thread
            return await _denialReports.ServeAsync(tunnel, request, aborted).ConfigureAwait(false);
        }

        if (request.Kind != TunnelRequestKind.TcpConnect)
        {
            return GatewayStreamResult.Unsupported(request);
        }

        var destination = request.Destination!;
        var decision = policy.CheckConnection(destination.Address, destination.Port, out AddressHold? hold);
        string? relearnTold = null;
        if ((!decision.IsAllowed || decision.WouldDeny) && HintRelearner.MayRelearn(decision, request.HostHint))
        {
            // Not (or no longer) known here, e.g. after a restart of egress-host: resolve the hint ourselves.
            await SocketReadiness.LeaveEpollThread(); // the resolution and its log lines: not on an epoll thread

            (decision, hold, string? why, relearnTold) = await _relearner.RelearnAsync(destination.Address, destination.Port, request.HostHint!, aborted).ConfigureAwait(false);
            if (why is null)
            {
                GatewayLog.Relearned(logger, destination.Address, request.HostHint!);
            }
            else
            {
                GatewayLog.RelearnFailed(logger, destination.Address, request.HostHint!, why);
            }
        }

        if (decision.IsAllowed && parentAddresses is not null && !policy.NamesExactly(destination.Address, destination.Port)
            && parentAddresses.TryGetInterface(destination.Address, out string? parentInterface))
        {
            // Allowed by a name, "*" or a wide network, but it is this machine: its own services are not egress.
            hold?.Dispose();
            decision = policy.ParentAddressDenial(parentInterface!);
        }

        if (decision.WouldDeny)
        {
            await SocketReadiness.LeaveEpollThread(); // report mode's line (a flood of them is what that mode is for)
        }

        WouldDenyLog.Connection(logger, options.Metrics, destination, request.HostHint, policy, decision);

        if (!decision.IsAllowed)
        {
            return GatewayStreamResult.Denied(request, destination, decision, relearnTold);
        }

        // Allowed, not dialled yet: a new stream's first connection may not take the last streams of the limit (or of
        // its enclave's share), kept for DNS and denial reports (a reused stream was counted when it was new: relayed
        // connections never hold more than the rest). After the policy: a denial is logged and reported as one.
        if (!reused && Reserve?.RefusalFor(tunnel) is { } kept)
        {
            hold?.Dispose();
            return GatewayStreamResult.StreamLimitOf(request, kept);
        }

        return new StreamDecision(null, request, destination, following, decision, hold);
    }

    /// <summary>What <see cref="OpenAsync"/> comes to: the stream's outcome already (<see cref="Done"/>), or the relay it
    /// started.</summary>
    private readonly record struct StreamOpening(GatewayStreamResult? Done, RelayedStream? Relayed)
    {
        public static implicit operator StreamOpening(GatewayStreamResult done) => new(done, null);
    }

    /// <summary>
    /// Reads and decides the request (<see cref="DecideAsync"/>); an allowed TCP connection is dialled, answered Ok and
    /// its relay started. Nothing of this method waits while the relay runs: the caller awaits the relay
    /// (<see cref="RelayedStream.Relay"/>) and disposes what it returns. <paramref name="reused"/>: the stream carried a
    /// relay before, whose splicing made it non-blocking.
    /// </summary>
    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<StreamOpening> OpenAsync(
        Socket tunnel, ConnectionListener listener, ReadOnlyMemory<byte> received, bool reused, CancellationToken aborted)
    {
        var decided = await DecideAsync(tunnel, listener, received, reused, aborted).ConfigureAwait(false);
        if (decided.Done is { } done)
        {
            return done;
        }

        AddressHold? hold = decided.Hold;
        Socket? upstream = null;
        DeferredKeepAlive.Ticket keepAliveTicket = default;
        try
        {
            var request = decided.Request;
            var destination = decided.Destination!;
            var decision = decided.Decision;
            (upstream, var status, var detail) = await DestinationDialer.ConnectAsync(
                destination, options.ConnectTimeout, options.Relay.TimeProvider, aborted, connect, tunnel).ConfigureAwait(false);
            if (upstream is null)
            {
                return GatewayStreamResult.ConnectFailed(request, destination, decision, status, detail);
            }

            keepAliveTicket = _keepAlive.Add(upstream);

            await TunnelHandshake.SendResponseAsync(tunnel, new TunnelResponse(TunnelStatus.Ok) { Version = request.Version }, aborted).ConfigureAwait(false);
            GatewayLog.Connected(logger, destination, new HostHintText(request.HostHint), decision, new ConnectionIdText(request.ConnectionId));
            if (GatewayStreamResult.RelayedTags(decision) is var (outcome, reason))
            {
                options.Metrics?.Connection(outcome, reason);
            }

            options.Metrics?.RelayStarted();
            var serverNameGate = ServerNameGate.For(policy, destination, decision, options.Relay.TimeProvider);

            // Version 1 streams keep the raw relay; version 2 frames the tunnel side (A), so the destination's RST,
            // a relay error or this host stopping reaches the enclave as an END frame with its cause.
            var relay = request.Version == TunnelCodec.Version2
                ? SocketRelay.RunFramedAsync(
                    tunnel, upstream, RelaySide.A, decided.Following, ReadOnlyMemory<byte>.Empty, options.Relay, serverNameGate, aborted, AlreadyNonBlocking(reused))
                : SocketRelay.RunAsync(tunnel, upstream, decided.Following, default, options.Relay, serverNameGate, aborted);
            var relayed = new RelayedStream(request, destination, decision, hold, upstream, _keepAlive, keepAliveTicket, serverNameGate, relay);
            (hold, upstream) = (null, null); // the caller's now
            return new StreamOpening(null, relayed);
        }
        finally
        {
            // Not relayed (the dial failed, or the answer could not be sent): the socket closes, then the hold goes.
            if (upstream is not null)
            {
                _keepAlive.Remove(keepAliveTicket);
                upstream.Dispose();
            }

            hold?.Dispose();
        }
    }

    /// <summary>Which of a relay's sockets are non-blocking already: the destination when our own connect dialled it
    /// (<see cref="SocketReadiness.ConnectWithoutContextAsync"/> sets the mode first), the tunnel stream when a relay ran
    /// on it before.</summary>
    private NonBlockingSides AlreadyNonBlocking(bool reused) =>
        (reused ? NonBlockingSides.A : NonBlockingSides.None) | (connect is null ? NonBlockingSides.B : NonBlockingSides.None);

    /// <summary>The relay's end: the server-name check's line, and the stream's result.</summary>
    private GatewayStreamResult Relayed(RelayedStream relayed, RelayResult relay)
    {
        var destination = relayed.Destination;
        var hint = new HostHintText(relayed.Request.HostHint);
        var connectionId = new ConnectionIdText(relayed.Request.ConnectionId);
        if (relayed.ServerNameGate is { Refusal: not ServerNameRefusal.None, ReportOnly: true } reported)
        {
            GatewayLog.ServerNameWouldRefuse(logger, destination, hint, reported.RefusalText, reported.ServerName ?? "(none)", reported.LearnedNamesText, reported.ModeText, connectionId);
        }
        else if (relayed.ServerNameGate is { Refusal: not ServerNameRefusal.None } refused)
        {
            GatewayLog.ServerNameRefused(logger, destination, hint, refused.RefusalText, refused.ServerName ?? "(none)", refused.LearnedNamesText, refused.ModeText, connectionId);
            options.Metrics?.ServerNameRefused(refused.Refusal);
        }
        else if (relay.Framed is { Received: TunnelEndCause.Refused } && relay.BytesAToB == 0)
        {
            // The enclave refused first (its line has the server name; it is counted there): say why this one ended.
            GatewayLog.EnclaveRefusedServerName(logger, destination, hint, connectionId);
        }

        var gate = relayed.ServerNameGate;
        return GatewayStreamResult.Relayed(
            relayed.Request, destination, relayed.Decision, relay, gate?.ServerName, gate is { Refusal: not ServerNameRefusal.None } checkedGate ? checkedGate.RefusalText : null);
    }

    /// <summary>The one place a stream's outcome is logged and counted, and its status answered.</summary>
    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask CompleteAsync(Socket tunnel, GatewayStreamResult result, CancellationToken aborted, uint? cid = null)
    {
        Record(result, cid);
        if (result.Answer is { } answer)
        {
            // The request's version when one was read (the enclave reads the answer in the version it asked in), else 1.
            byte version = result.Request.Version == TunnelCodec.Version2 ? TunnelCodec.Version2 : TunnelCodec.Version;
            await TunnelHandshake.SendResponseAsync(tunnel, answer with { Version = version }, aborted).ConfigureAwait(false);
        }
    }

    private void Record(GatewayStreamResult result, uint? cid = null)
    {
        if (options.Audit is { } audit && AuditRecords.ForParent(result, cid, options.Relay.TimeProvider.GetUtcNow()) is { } record)
        {
            audit.Write(record);
        }

        var request = result.Request;
        switch (result.Outcome)
        {
            case StreamOutcome.Relayed:
                var relay = result.Relay!;
                options.Metrics?.RelayEnded(relay.BytesAToB, relay.BytesBToA, relay.Duration, relay.FirstCause);
                GatewayLog.Closed(
                    logger, result.Destination!, relay.BytesAToB, relay.BytesBToA, relay.FirstCause, RelayEnds.LogText(relay), relay.Duration.TotalMilliseconds,
                    new ConnectionIdText(request.ConnectionId));
                if (relay.FirstCause == RelayShutdownCause.BReadError && _keepAlive.KeepAlive.Enabled
                    && relay.Error is SocketException { SocketErrorCode: SocketError.TimedOut } or IOException { InnerException: SocketException { SocketErrorCode: SocketError.TimedOut } })
                {
                    GatewayLog.KeepAliveTimedOut(logger, result.Destination!, _keepAlive.KeepAlive.Probes, _keepAlive.KeepAlive.DeadAfterSeconds);
                }

                break;
            case StreamOutcome.DnsServed:
                // The enclave closes its DNS streams after 30 s without a query and reopens them on the next: an
                // ordinary end is logged at Debug only (as the open), any other with its reason at Information.
                string end = result.DnsEnd.Text("the enclave", _dnsStreams);
                if (result.DnsEnd.IsNormal)
                {
                    GatewayLog.DnsStreamClosed(logger, end);
                }
                else
                {
                    GatewayLog.DnsStreamEnded(logger, end);
                }

                break;
            case StreamOutcome.DenialReport:
                break; // its records are its lines (DenialReportReceiver)
            case StreamOutcome.ClosedBeforeRequest:
                GatewayLog.ClosedBeforeRequest(logger);
                break;
            case StreamOutcome.HeaderTimeout:
                GatewayLog.HeaderTimeout(logger, options.HeaderTimeout.TotalMilliseconds);
                break;
            case StreamOutcome.BadRequest:
                GatewayLog.BadRequest(logger, result.ReadResult, result.Status);
                break;
            case StreamOutcome.StreamLimit:
                var limitLines = request.Kind switch
                {
                    TunnelRequestKind.Dns => _dnsLimitLines,
                    TunnelRequestKind.DenialReport => _reportLimitLines,
                    _ => _tcpLimitLines,
                };
                if (limitLines.TryEnter(out long heldBack))
                {
                    GatewayLog.StreamLimit(logger, request.Kind, new StreamTargetText(result.Destination), result.LimitReason!, new HeldBackLines(heldBack, "rejected"));
                }

                break;
            case StreamOutcome.PeerRefused:
                // A configuration error ([[host.enclaves]] does not map the peer): a line each, never held back behind
                // another enclave's flood at a limit.
                GatewayLog.PeerRefused(logger, request.Kind, new StreamTargetText(result.Destination), result.LimitReason!);
                break;
            case StreamOutcome.UnsupportedKind:
                GatewayLog.Unsupported(logger, request.Kind);
                break;
            case StreamOutcome.Denied:
                GatewayLog.Denied(logger, result.Destination!, new HostHintText(request.HostHint), result.Decision, new ConnectionIdText(request.ConnectionId));
                break;
            case StreamOutcome.ConnectFailed:
                GatewayLog.ConnectFailed(logger, result.Destination!, new HostHintText(request.HostHint), result.Status, result.Detail, new ConnectionIdText(request.ConnectionId));
                break;
            case StreamOutcome.StreamFailed:
                GatewayLog.StreamFailed(logger, result.Detail ?? string.Empty);
                break;
        }

        if (result.Outcome != StreamOutcome.Relayed)
        {
            Count(result);
        }

        if (result.TunnelError is { } kind)
        {
            options.Metrics?.TunnelError(kind);
        }
    }

    private void Count(GatewayStreamResult result)
    {
        if (result.ConnectionTags is var (outcome, reason))
        {
            options.Metrics?.Connection(outcome, reason);
        }
    }

    /// <summary>Answers Ok, then serves the stream's framed queries until the enclave closes it or a stop begins: why it ended.</summary>
    /// <remarks>A stream whose place a new one takes at the DNS stream limit (<paramref name="slot"/>) ends as at a stop:
    /// it reads no further query, and its answers in flight (none: only an idle stream's place is taken) are written.</remarks>
    private async Task<DnsStreamEnd> ServeDnsAsync(Socket streamSocket, DnsStreamSlot slot, CancellationToken stopping, CancellationToken aborted)
    {
        await TunnelHandshake.SendResponseAsync(streamSocket, new TunnelResponse(TunnelStatus.Ok), aborted).ConfigureAwait(false);
        GatewayLog.DnsStreamOpened(logger, string.Join(", ", dnsUpstreams.Upstreams));
        var answerer = new UpstreamDnsAnswerer(policy, dnsUpstreams, options.Metrics, logger, _dnsOverloadLines, _dnsFailedLines, _dnsDeniedLines, slot);
        var tunnel = DnsStreamPipe.Start(streamSocket, "dns stream");
        using var stoppingOrGivenUp = CancellationTokenSource.CreateLinkedTokenSource(stopping, slot.GivenUpToken);
        DnsStreamEnd? end = null;
        try
        {
            end = await DnsFramedConnection.ServeAsync(
                tunnel, answerer, _dnsStreams, logger, stoppingOrGivenUp.Token, aborted).ConfigureAwait(false);
            return end.Value;
        }
        finally
        {
            if (end is { Reason: DnsStreamEndReason.PeerNotReading })
            {
                // A peer that does not read gets no tail: closed at once, not after CloseDeadline of a blocked flush (a
                // red-team trial: such streams kept their descriptor and stream place 30 s after event 317).
                tunnel.Dispose();
            }
            else
            {
                using var closing = new CancellationTokenSource(CloseDeadline);
                await tunnel.CloseAsync(closing.Token).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Reads the request under the header timeout, starting with <paramref name="received"/> (a reused stream's bytes
    /// already read): the request and the bytes read past it, or the outcome that ends the stream.
    /// </summary>
    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<(GatewayStreamResult? Failed, TunnelRequest Request, ReadOnlyMemory<byte> Following)> ReadRequestAsync(
        Socket tunnel, ReadOnlyMemory<byte> received, CancellationToken aborted)
    {
        TunnelReadResult result;
        TunnelRequest request;
        ReadOnlyMemory<byte> following;
        try
        {
            using var deadline = new CancellationTokenSource(options.HeaderTimeout, options.Relay.TimeProvider);
            using var linked = aborted.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), deadline);
            (result, request, following) = await TunnelHandshake.ReadRequestAsync(tunnel, received, deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
        {
            return (GatewayStreamResult.HeaderTimedOut, default, default);
        }

        return result switch
        {
            TunnelReadResult.Complete => (null, request, following),
            TunnelReadResult.TruncatedStream => (GatewayStreamResult.ClosedBeforeRequest, default, default),
            _ => (GatewayStreamResult.BadRequestOf(result), default, default),
        };
    }
}
