using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Egress.Diagnostics;
using Egress.Audit;
using Egress.Connections;
using Egress.Interception;
using Egress.Policy;
using Egress.Relay;
using Egress.Sockets;
using Egress.Tls;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;

namespace Egress.Proxy;

/// <summary>
/// One redirected connection: original destination, policy, tunnel stream, parent's status, relay. Never waits for the
/// application's bytes before the tunnel is up (server-speaks-first protocols work): what the application has already
/// written goes with a version 2 request as early data (one receive that does not wait; docs/tunnel-protocol.md, "Early
/// data"), and the rest is read by the relay after the parent answered Ok. Every path ends in one
/// <see cref="ProxyConnectionResult"/>, and <see cref="Complete"/> logs, counts and resets or closes from it.
/// </summary>
/// <param name="options">The proxy's settings.</param>
/// <param name="policy">The enclave's allowlist.</param>
/// <param name="logger">Where each connection's outcome is logged.</param>
/// <param name="originalDestination">Reads an accepted socket's original destination (<see cref="OriginalDestination.Read"/>
/// in production; a fake in tests, which need neither root nor iptables).</param>
/// <param name="connectTunnel">Opens a tunnel stream to the parent for the <see cref="TunnelClient"/> (tests); it throws
/// <see cref="SocketException"/> or <see cref="IOException"/> when the tunnel is unavailable. Null in production: the
/// client connects the options' tunnel endpoint itself, its relay streams without the runtime's asynchronous context
/// (<see cref="TunnelEndpoint.ConnectForRelayAsync"/>), which an injected connect would bypass.</param>
/// <param name="tunnelVersion">The tunnel protocol version asked for: 2 (framed, falling back to 1 for a parent that
/// speaks only 1), or 1 (raw; tests of a version 1 enclave).</param>
/// <param name="streamPool">Where version 2 streams that ended clean wait for the next connection (docs/tunnel-protocol.md,
/// "Stream reuse"); owned by the handler from here on (closed by <see cref="Dispose"/>, trimmed every half expiry); null:
/// every connection opens its own stream.</param>
internal sealed class ProxyConnectionHandler(
    EgressProxyOptions options,
    EgressPolicy policy,
    ILogger logger,
    Func<Socket, OriginalDestinationResult> originalDestination,
    Func<CancellationToken, ValueTask<Socket>>? connectTunnel,
    byte tunnelVersion = TunnelCodec.Version2,
    TunnelStreamPool? streamPool = null) : IDisposable
{
    private readonly TunnelStreamPool? _pool = streamPool;

    private readonly LogRateLimit _parentLimitLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 106);
    private readonly LogRateLimit _setupShareLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 121);
    private readonly LogRateLimit _setupWaitLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 122);
    private readonly LogRateLimit _stoppingLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 112);
    private readonly LogRateLimit _unavailableLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 109, LogRateLimit.FailureLinesPerInterval);
    private readonly LogRateLimit _tunnelCutLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 128, LogRateLimit.FailureLinesPerInterval);
    private readonly LogRateLimit _othersFirstLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 124, LogRateLimit.FailureLinesPerInterval);

    private readonly RecentDestinationFailures _recentFailures = new(options.Relay.TimeProvider);

    private readonly TunnelClient _tunnel = new(options.Tunnel, options.StatusTimeout, options.Relay.TimeProvider, connectTunnel, streamPool);

    private readonly ITimer? _trim = streamPool is null ? null : options.Relay.TimeProvider.CreateTimer(
        static pool => ((TunnelStreamPool)pool!).Trim(), streamPool, streamPool.IdleExpiry / 2, streamPool.IdleExpiry / 2);

    /// <summary>Creates the production handler (<paramref name="originalDestination"/>: SO_ORIGINAL_DST but in tests), the options' tunnel endpoint, and a pool of
    /// <see cref="TunnelStreamPool.DefaultCapacity"/> streams idle at most <see cref="TunnelStreamPool.DefaultIdleExpiry"/>.</summary>
    public ProxyConnectionHandler(EgressProxyOptions options, EgressPolicy policy, ILogger logger, Func<Socket, OriginalDestinationResult> originalDestination)
        : this(
            options, policy, logger, originalDestination, connectTunnel: null, TunnelCodec.Version2,
            new TunnelStreamPool(TunnelStreamPool.DefaultCapacity, TunnelStreamPool.DefaultIdleExpiry, options.Relay.TimeProvider))
    {
    }

    /// <summary>Closes the pooled streams; a stream returned afterwards is closed (the proxy is stopping).</summary>
    public void Dispose()
    {
        _trim?.Dispose();
        _pool?.Dispose();
    }

    /// <summary>Handles one accepted connection to its end; never throws for a network failure.</summary>
    /// <returns>The outcome, already logged and counted.</returns>
    public Task<ProxyConnectionResult> HandleAsync(Socket client, CancellationToken aborted) => HandleAsync(client, ConnectionSetup.None, aborted);

    /// <summary>Handles one accepted connection to its end, completing <paramref name="setup"/> when the relay starts
    /// (the parent answered Ok); never throws for a network failure.</summary>
    /// <returns>The outcome, already logged and counted.</returns>
    /// <remarks>Not itself async: an allowed connection's task is <see cref="RelayAsync"/>'s, so the one state machine
    /// waiting above the relay for the connection's whole life is that method's; the checks before the tunnel opens are
    /// not async (<see cref="Decide"/>).</remarks>
    public Task<ProxyConnectionResult> HandleAsync(Socket client, ConnectionSetup setup, CancellationToken aborted)
    {
        if (Decide(client, out IPEndPoint? destination, out PolicyDecision decision, out AddressHold? hold) is { } refused)
        {
            Complete(client, refused);
            return Task.FromResult(refused);
        }

        return RelayAsync(client, destination!, decision, hold, setup, aborted);
    }

    /// <summary>
    /// The name an address was learned from, as the request's host hint. A learned name the hint format cannot
    /// carry (a wildcard entry matches any label bytes) is left out rather than failing the connection.
    /// </summary>
    internal static string? HostHintFor(PolicyDecision decision) =>
        decision.Reason is DecisionReason.Learned or DecisionReason.LearnedInGrace or DecisionReason.LearnedInUse
            && decision.Subject is { } name && TunnelHostHint.IsValid(name.AsSpan())
            ? name
            : null;

    /// <summary>The accepted connection's original destination and the policy's decision on it.</summary>
    /// <returns>Null when the connection is to be relayed (<paramref name="destination"/>, <paramref name="decision"/>
    /// and the caller-owned <paramref name="hold"/> set); otherwise the outcome (not redirected, denied).</returns>
    private ProxyConnectionResult? Decide(Socket client, out IPEndPoint? destination, out PolicyDecision decision, out AddressHold? hold)
    {
        destination = null;
        decision = default;
        hold = null;
        var original = originalDestination(client);
        if (original.Status != OriginalDestinationStatus.Redirected)
        {
            return ProxyConnectionResult.NotRedirected(original.Status, original.Detail);
        }

        destination = original.Destination!;
        decision = policy.CheckConnection(destination.Address, destination.Port, out hold);
        WouldDenyLog.Connection(logger, options.Metrics, destination, name: null, policy, decision);
        return decision.IsAllowed ? null : ProxyConnectionResult.Denied(destination, decision);
    }

    /// <summary>
    /// Opens the tunnel stream (failing over to another address of the name when the destination refused), relays, and
    /// completes the connection (<see cref="Complete"/>) with the outcome.
    /// </summary>
    /// <param name="client">The application's connection.</param>
    /// <param name="destination">Its original destination.</param>
    /// <param name="decision">The policy's allowing decision, which a failure's result carries.</param>
    /// <param name="hold">Keeps a learned address allowed while this connection is open, whatever the answer's TTL;
    /// disposed here.</param>
    /// <param name="setup">Completed once the parent answered Ok.</param>
    /// <param name="aborted">Cancelled when the proxy stops.</param>
    private async Task<ProxyConnectionResult> RelayAsync(
        Socket client, IPEndPoint destination, PolicyDecision decision, AddressHold? hold, ConnectionSetup setup, CancellationToken aborted)
    {
        ProxyConnectionResult result;
        AddressHold? failoverHold = null;
        try
        {
            // No destination holds more than its share of the setup places: one slow to connect (a blackholed address
            // holds each setup for the parent's whole connect timeout) must not keep other destinations' connections
            // waiting in the listen backlog. Beyond its share, this connection waits for the destination's turn (aside,
            // without its place, once the destination proves slow: ConnectionSetupLimit).
            if (await setup.TakeTurnAsync(destination, aborted).ConfigureAwait(false) is not SetupTurn.Taken and var notTaken)
            {
                result = (notTaken switch
                {
                    SetupTurn.Full => ProxyConnectionResult.Failed(ConnectionOutcome.SetupShareFull, destination, setup.RefusalText(notTaken)),
                    SetupTurn.TimedOut => ProxyConnectionResult.Failed(ConnectionOutcome.SetupWaitTimeout, destination, setup.RefusalText(notTaken)),
                    _ => ProxyConnectionResult.Failed(ConnectionOutcome.Stopping, destination),
                }).WithAllowingDecision(decision);
                Complete(client, result);
                return result;
            }

            if (!OperatingSystem.IsLinux())
            {
                // On Linux the accepted socket has it from the proxy's listener (EgressProxy.Bind): no system call here.
                client.NoDelay = true; // before the tunnel exists: nothing can leak if it throws
            }

            // The application's first bytes when they are already there (a client that writes its request or
            // ClientHello right after connect): they go with the version 2 request, one send and one wake-up of the
            // parent fewer. Never waited for: a server that speaks first gets no delay. When the server name is
            // checked, they go only once the check has allowed them (they decided it: a whole ClientHello, or bytes
            // that are not TLS); otherwise the check reads them, and the rest, in the relay, before any is sent.
            ReadOnlyMemory<byte> early = default;
            bool earlyDrained = false, earlyTried = false;
            bool nameChecked = ServerNameGate.Applies(policy, decision);
            ServerNameGate? acceptGate = null; // the destination's check, built at accept to read the early bytes; the relay's too
            bool earlyChecked = false; // acceptGate allowed the early bytes (or only reported them): they go early, unchecked again
            if (tunnelVersion == TunnelCodec.Version2)
            {
                byte[] buffer = ArrayPool<byte>.Shared.Rent(EarlyDataLength);
                int got;
                try
                {
                    got = SocketReadiness.ReceiveNow(client, buffer.AsSpan(0, EarlyDataLength));
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    // The application reset its connection before anything was relayed: no destination is dialled. The
                    // kernel reports a reset once, so it ends the connection here rather than look like an end of stream later.
                    // An id of its own, which no request carries, joins its two lines (as RefusedAtAccept's).
                    ArrayPool<byte>.Shared.Return(buffer);
                    ulong resetId = TunnelConnectionId.New();
                    Started(destination, decision, resetId);
                    setup.Complete();
                    var reset = new RelayResult(0, 0, RelayShutdownCause.AReadError, ex, TimeSpan.Zero);
                    result = ProxyConnectionResult.Relayed(destination, decision, reset, resetId, serverName: null, serverNameRefusal: null);
                    Complete(client, result);
                    return result;
                }

                // Copied out (the bytes a client writes at once, usually a few hundred): no pooled buffer is held while
                // the parent is asked, however long that takes.
                early = got > 0 ? buffer.AsSpan(0, got).ToArray() : ReadOnlyMemory<byte>.Empty;
                earlyDrained = got < EarlyDataLength;
                earlyTried = true;
                ArrayPool<byte>.Shared.Return(buffer);
                if (nameChecked && !early.IsEmpty)
                {
                    acceptGate = ServerNameGate.For(policy, destination, decision, options.Relay.TimeProvider)!;
                    switch (acceptGate.TryDecide(early.Span))
                    {
                        case true:
                            earlyChecked = true;
                            break;
                        case false:
                            // Refused before any tunnel stream: the parent is not asked and no destination is dialled.
                            result = RefusedAtAccept(client, destination, decision, acceptGate, setup);
                            Complete(client, result);
                            return result;
                        // null: not decided yet (the start of a ClientHello); the relay's check reads on with this gate.
                    }
                }
            }

            string? hint = HostHintFor(decision);
            IPEndPoint original = destination;
            TunnelConnectResult? tunnel;
            ProxyConnectionResult? failure;
            RecentDestinationFailures.Failure lately = default;
            TimeSpan ago = default;
            bool probe = false;
            if (hint is not null && options.FailoverAttempts > 0
                && _recentFailures.TryGet(destination, out lately, out ago, out probe)
                && string.Equals(lately.Name, hint, StringComparison.OrdinalIgnoreCase) && lately.Others.Length > 0)
            {
                // The parent could not reach this destination a moment ago (RecentDestinationFailures): the other
                // addresses this name had then first (each only while still learned from it, and checked again, as any
                // failover's is), this one last, rather than the connect timeout again for every connection. Through
                // another name of the address, its own other addresses are read after a failure, as ever.
                List<IPAddress> order = [.. lately.Others];
                LatelyUnreachableLast(order, destination.Port);
                order.RemoveRange(Math.Min(order.Count, options.FailoverAttempts), Math.Max(0, order.Count - options.FailoverAttempts));
                string agoText = ago < TimeSpan.FromSeconds(1) ? "just now" : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{(long)ago.TotalSeconds} s ago");
                if (_othersFirstLines.TryEnter(out long othersFirstBack))
                {
                    // Every connection to it for up to 30 s: the first ten a second, counted (a trial: one line per request).
                    ProxyLog.TryingOthersFirst(logger, destination, agoText, lately.Status, order.Count, hint, new HeldBackLines(othersFirstBack));
                }

                order.Add(destination.Address);
                (acceptGate, earlyChecked) = (null, false); // each address's own check, in the relay (FailOverAsync sends no checked bytes early)
                var remembered = ProxyConnectionResult.ParentRefused(
                    destination, lately.Status, $"not dialled: the parent could not reach it {agoText}, and no other address of {hint} connected").WithAllowingDecision(decision);
                (tunnel, destination, decision, failoverHold, failure) = await FailOverAsync(client, destination, decision, remembered, hint, early, aborted, order).ConfigureAwait(false);
            }
            else
            {
                if (probe)
                {
                    // The one connection at a time that dials a lately unreachable destination first again: said, so that
                    // its wait (the parent's connect timeout when it is still dead) is not a mystery (a trial).
                    ProxyLog.ProbingAgain(logger, destination, (long)ago.TotalSeconds, lately.Status, lately.Name);
                }

                (tunnel, failure) = await OpenTunnelAsync(destination, hint, nameChecked && !earlyChecked ? ReadOnlyMemory<byte>.Empty : early, aborted).ConfigureAwait(false);
                failure = failure?.WithAllowingDecision(decision);
                if (tunnel is null && failure is not null && hint is not null && CanFailOver(failure))
                {
                    (acceptGate, earlyChecked) = (null, false); // another address: its own check, in the relay
                    (tunnel, destination, decision, failoverHold, failure) = await FailOverAsync(client, destination, decision, failure, hint, early, aborted, tryLast: null).ConfigureAwait(false);
                }
                else if (tunnel is not null)
                {
                    _recentFailures.Forget(destination); // no lock unless some destination failed lately
                }
            }

            if (tunnel is not null && (failoverHold is not null || !destination.Equals(original)))
            {
                // Relayed to another address of the name (the one the application asked for is not in use through it), or
                // to that one tried last, which the failover's own hold holds: one hold per connection.
                hold?.Dispose();
                hold = null;
            }

            if (tunnel?.Socket is not { } stream)
            {
                result = failure!; // every result without a stream carries its failure
            }
            else
            {
                // What the relay and its end need of the connect result, which is not kept while the connection lasts (80 B).
                ulong connectionId = tunnel.ConnectionId;
                bool framed = tunnel.Version == TunnelCodec.Version2;
                ReadOnlyMemory<byte> afterStatus = tunnel.ReceivedAfterStatus;
                tunnel = null;
                Started(destination, decision, connectionId);
                setup.Complete(); // set up: the next connection may be accepted
                var serverNameGate = acceptGate ?? ServerNameGate.For(policy, destination, decision, options.Relay.TimeProvider);
                IFirstBytesGate? relayGate = earlyChecked ? null : serverNameGate; // checked at accept: not again

                // The early bytes went with the request unless the stream fell back to version 1 or their server name
                // was not checked yet (not a whole ClientHello at accept, or a failover's destination): then the relay
                // sends them first, as bytes already read from A (behind the check, when there is one).
                bool earlySent = framed && relayGate is null && !early.IsEmpty;
                ReadOnlyMemory<byte> readFromA = earlySent ? ReadOnlyMemory<byte>.Empty : early;
                var forwarded = earlySent ? new ForwardedEarly(early.Length, earlyDrained) : default;
                if (earlyTried)
                {
                    options.Metrics?.EarlyData(earlySent ? "sent" : early.IsEmpty ? "none" : "after_status");
                }

                early = default; // this state machine waits for the connection's whole life: it keeps no reference to the bytes

                SocketReadiness.ShareEngine(client, stream); // its events wake the thread that serves the stream's
                RelayResult? relay = null;
                try
                {
                    // Version 2: the tunnel side (B) is framed, so an abort on the far side reaches the application as RST.
                    relay = framed
                        ? await SocketRelay.RunFramedAsync(
                            client, stream, RelaySide.B, readFromA, afterStatus, options.Relay, relayGate, aborted,
                            _tunnel.StreamsNonBlocking ? NonBlockingSides.B : NonBlockingSides.None, forwarded).ConfigureAwait(false)
                        : await SocketRelay.RunAsync(client, stream, readFromA, afterStatus, options.Relay, relayGate, aborted).ConfigureAwait(false);
                }
                finally
                {
                    // A clean version 2 stream carries the next connection; the parent sends nothing between requests.
                    if (framed && relay is not null && TunnelStreamPool.EndedClean(relay)
                        && relay.TunnelAfterEnd.IsEmpty && !aborted.IsCancellationRequested)
                    {
                        _tunnel.Return(stream);
                    }
                    else
                    {
                        stream.Dispose();
                    }
                }

                ServerNameChecked(destination, serverNameGate, connectionId);
                result = ProxyConnectionResult.Relayed(
                    destination, decision, relay, connectionId, serverNameGate?.ServerName,
                    serverNameGate is { Refusal: not ServerNameRefusal.None } checkedGate ? checkedGate.RefusalText : null);
            }
        }
        finally
        {
            failoverHold?.Dispose();
            hold?.Dispose();
        }

        Complete(client, result);
        return result;
    }

    /// <summary>The server-name check's line, metric and denial report when it refused (or, in report mode, would have).</summary>
    private void ServerNameChecked(IPEndPoint destination, ServerNameGate? gate, ulong connectionId)
    {
        if (gate is { Refusal: not ServerNameRefusal.None, ReportOnly: true } reported)
        {
            ProxyLog.ServerNameWouldRefuse(logger, destination, reported.RefusalText, reported.ServerName ?? "(none)", reported.LearnedNamesText, reported.ModeText, new ConnectionIdText(connectionId));
        }
        else if (gate is { Refusal: not ServerNameRefusal.None } refused)
        {
            ProxyLog.ServerNameRefused(logger, destination, refused.RefusalText, refused.ServerName ?? "(none)", refused.LearnedNamesText, refused.ModeText, new ConnectionIdText(connectionId));
            options.Metrics?.ServerNameRefused(refused.Refusal);
            options.Denials?.ServerName(destination, refused.ServerName, refused.Refusal);
        }
    }

    /// <summary>
    /// A connection whose ClientHello, queued when it was accepted, the server-name check refused: reset, with no tunnel
    /// stream opened and nothing sent, logged and counted as a refusal in the relay is (the allowed address, then the
    /// refusal, then the end with <see cref="RelayShutdownCause.Refused"/>). It gets a connection id of its own, which
    /// the parent never sees, so that its three lines and its audit record join as any connection's do.
    /// </summary>
    private ProxyConnectionResult RefusedAtAccept(Socket client, IPEndPoint destination, PolicyDecision decision, ServerNameGate gate, ConnectionSetup setup)
    {
        ulong connectionId = TunnelConnectionId.New();
        Started(destination, decision, connectionId);
        setup.Complete();
        SocketReset.Reset(client); // as the relay resets a refused application: it sees ECONNRESET, never a clean end
        ServerNameChecked(destination, gate, connectionId);
        var refused = new RelayResult(0, 0, RelayShutdownCause.Refused, null, TimeSpan.Zero);
        return ProxyConnectionResult.Relayed(destination, decision, refused, connectionId, gate.ServerName, gate.RefusalText);
    }

    /// <summary>The most of the application's first bytes read for early data (docs/tunnel-protocol.md, "Early data"):
    /// 3,788, so that the longest request, the DATA frame's header and these bytes fill one 4 KiB send, and one receive
    /// of the parent's (<see cref="TunnelHandshake.RequestReceiveSize"/>).</summary>
    internal const int EarlyDataLength = TunnelHandshake.RequestReceiveSize - TunnelCodec.MaxRequestLength - TunnelFrames.HeaderLength;

    /// <summary>Whether the parent's answer says the destination itself failed (refused, unreachable, timed out), so
    /// another address of the same name may serve.</summary>
    private bool CanFailOver(ProxyConnectionResult failure) =>
        options.FailoverAttempts > 0
        && failure.Outcome == ConnectionOutcome.ParentRefused
        && failure.ParentStatus is TunnelStatus.ConnectionRefused or TunnelStatus.Unreachable or TunnelStatus.TimedOut;

    /// <summary>
    /// Tries up to <see cref="EgressProxyOptions.FailoverAttempts"/> other live addresses learned from
    /// <paramref name="name"/>, on the same port, each checked and held like the first: the application's connect()
    /// already succeeded (the proxy accepted it), so it cannot fall over to the next address itself. Addresses the parent
    /// could not reach lately (<see cref="RecentDestinationFailures"/>) are tried last. Returns the first that connects,
    /// with its decision and hold. When none does: no socket, the first destination and <paramref name="failure"/> (the
    /// app's connection is reset for it), or the failure that ended the attempts when it was not the destination's (the
    /// tunnel, the parent, a stop).
    /// </summary>
    /// <param name="client">The application's connection: once an attempt has failed, no further one is made after it has
    /// closed its side (<see cref="ApplicationClosed"/>).</param>
    /// <param name="failed">The connection's destination.</param>
    /// <param name="failedDecision">Its allowing decision, which a failure's result carries.</param>
    /// <param name="failure">Its failure: as the parent answered now, or as remembered (<paramref name="tryLast"/>).</param>
    /// <param name="name">The name its address was learned from, whose other addresses are tried.</param>
    /// <param name="early">The application's first bytes, sent with each request (not when the server name is checked).</param>
    /// <param name="aborted">Cancelled when the proxy stops.</param>
    /// <param name="tryLast">Null: <paramref name="failed"/> was dialled and failed with <paramref name="failure"/>.
    /// Otherwise it was not dialled, having failed lately (<paramref name="failure"/> is that remembered answer): these
    /// are the addresses to try, its name's others and then its own, last; when none connects, the result is its own
    /// attempt's.</param>
    private async Task<(TunnelConnectResult? Tunnel, IPEndPoint Destination, PolicyDecision Decision, AddressHold? Hold, ProxyConnectionResult? Failure)> FailOverAsync(
        Socket client, IPEndPoint failed, PolicyDecision failedDecision, ProxyConnectionResult failure, string name, ReadOnlyMemory<byte> early, CancellationToken aborted,
        List<IPAddress>? tryLast)
    {
        List<IPAddress> candidates;
        if (tryLast is null)
        {
            // All the name's other addresses (a name has few): remembered with this failure for the next connections,
            // then the lately unreachable moved last before the attempts are cut to the configured number.
            candidates = policy.OtherAddressesOf(name, failed.Address, MaxOtherAddresses);
            _recentFailures.Record(failed, failure.ParentStatus, name, candidates);
            LatelyUnreachableLast(candidates, failed.Port);
            candidates.RemoveRange(Math.Min(candidates.Count, options.FailoverAttempts), Math.Max(0, candidates.Count - options.FailoverAttempts));
        }
        else
        {
            candidates = tryLast;
        }

        if (candidates.Count == 0)
        {
            ProxyLog.NoFailover(logger, failed, failure.ParentStatus, new ConnectionIdText(failure.ConnectionId), name);
            return (null, failed, failedDecision, null, failure);
        }

        ProxyConnectionResult previous = failure;
        IPEndPoint previousDestination = failed;
        int dialled = 0;
        bool applicationClosed = false;
        for (int attempt = 0; attempt < candidates.Count; attempt++)
        {
            var candidate = new IPEndPoint(candidates[attempt], failed.Port);
            bool itself = tryLast is not null && candidate.Equals(failed);
            if (tryLast is not null && !itself && !policy.StillLearnedFrom(candidate.Address, name))
            {
                continue; // remembered with the failure, no longer an address of the name (report mode would relax it)
            }

            if ((tryLast is null || dialled > 0) && previous.ParentStatus is TunnelStatus.TimedOut or TunnelStatus.Unreachable
                && ApplicationClosed(client))
            {
                // An attempt failed after the parent waited for it (its connect timeout, a neighbour lookup), and the
                // application has since closed: it may have given up (curl --max-time), and its request must not reach
                // another address after it did (a trial saw an abandoned POST arrive 3 s after curl had exited). After a
                // refusal, which comes at once, a client that half-closed after its request (nc -N) is failed over as ever.
                ProxyLog.NoFailoverApplicationClosed(logger, previousDestination, previous.ParentStatus, new ConnectionIdText(previous.ConnectionId), name);
                applicationClosed = true;
                break;
            }

            var decision = policy.CheckConnection(candidate.Address, candidate.Port, out AddressHold? hold);
            if (!decision.IsAllowed)
            {
                continue; // expired or evicted since the scan
            }

            TunnelConnectResult? tunnel;
            ProxyConnectionResult? result;
            try
            {
                WouldDenyLog.Connection(logger, options.Metrics, candidate, name, policy, decision);
                if (tryLast is null || dialled > 0)
                {
                    ProxyLog.FailingOver(logger, previousDestination, previous.ParentStatus, new ConnectionIdText(previous.ConnectionId), candidate, name, attempt + 1, candidates.Count);
                }

                if (tryLast is null || (dialled > 0 && !itself))
                {
                    options.Metrics?.Failover(); // not the first address of a remembered failure's order: nothing failed yet
                }

                dialled++;
                (tunnel, result) = await OpenTunnelAsync(
                    candidate, HostHintFor(decision) ?? name, ServerNameGate.Applies(policy, decision) ? ReadOnlyMemory<byte>.Empty : early, aborted).ConfigureAwait(false);
            }
            catch
            {
                hold?.Dispose(); // a logger that throws (a library caller's) must not leave the address held
                throw;
            }

            if (tunnel is not null)
            {
                _recentFailures.Forget(candidate);
                return (tunnel, candidate, decision, hold, null);
            }

            hold?.Dispose();
            if (!CanFailOver(result!))
            {
                if (tryLast is not null && !itself && result!.Outcome == ConnectionOutcome.ParentRefused && !ProxyLog.IsParentLimit(result.ParentStatus, result.Detail))
                {
                    // The parent refused this other address itself (its policy, say): the destination is still tried, last.
                    previous = result;
                    previousDestination = candidate;
                    continue;
                }

                return (null, candidate, decision, null, result!.WithAllowingDecision(failedDecision)); // not the destination's failure: said as it is
            }

            if (itself)
            {
                // The destination failed again: its name's other addresses read afresh (the remembered ones may be stale)
                // and remembered with it; when none of them was tried here, the ordinary failover tries them now.
                if (dialled == 1)
                {
                    return await FailOverAsync(client, failed, failedDecision, result!.WithAllowingDecision(failedDecision), name, early, aborted, tryLast: null).ConfigureAwait(false);
                }

                _recentFailures.Record(candidate, result!.ParentStatus, name, policy.OtherAddressesOf(name, failed.Address, MaxOtherAddresses));
            }
            else
            {
                // Remembered with the name's other addresses as this connection knows them; a refusal forgets it.
                _recentFailures.Record(candidate, result!.ParentStatus, name, tryLast is null ? candidates.Append(failed.Address) : candidates);
            }

            previous = result!;
            previousDestination = candidate;
        }

        if (!applicationClosed)
        {
            ProxyLog.FailoverExhausted(logger, failed, name, tryLast is null ? dialled : Math.Max(0, dialled - 1));
        }

        return tryLast is not null && previousDestination.Equals(failed)
            ? (null, failed, failedDecision, null, previous.WithAllowingDecision(failedDecision)) // its own attempt, last: as it answered now
            : (null, failed, failedDecision, null, failure);
    }

    /// <summary>Whether the application has closed its side (its FIN arrived, also behind bytes it wrote before that no
    /// receive has taken yet: curl's request, when the proxy took the connection before curl wrote it) or reset it. A
    /// peek would read those bytes first and say "open" (a trial: an abandoned POST still failed over).</summary>
    private static bool ApplicationClosed(Socket client)
    {
        try
        {
            return SocketNative.PeerShutDown(client.SafeHandle);
        }
        catch (ObjectDisposedException)
        {
            return true;
        }
    }

    /// <summary>The most other addresses of a name read for a failover (its attempts are cut to
    /// <see cref="EgressProxyOptions.FailoverAttempts"/> after the lately unreachable are moved last).</summary>
    private const int MaxOtherAddresses = 64;

    /// <summary>Moves the addresses the parent could not reach lately on <paramref name="port"/> to the end of
    /// <paramref name="candidates"/>, keeping the cache's order otherwise.</summary>
    private void LatelyUnreachableLast(List<IPAddress> candidates, int port)
    {
        if (_recentFailures.IsEmpty)
        {
            return;
        }

        var lately = candidates.FindAll(address => _recentFailures.Contains(new IPEndPoint(address, port)));
        if (lately.Count > 0 && lately.Count < candidates.Count)
        {
            candidates.RemoveAll(lately.Contains);
            candidates.AddRange(lately);
        }
    }

    /// <summary>Logs and counts an allowed connection whose relay starts now (its decision is counted at once, not
    /// when an hour-long relay ends).</summary>
    private void Started(IPEndPoint destination, PolicyDecision decision, ulong connectionId)
    {
        ProxyLog.Allowed(logger, destination, decision, new ConnectionIdText(connectionId));
        if (options.Metrics is { } metrics)
        {
            var (outcome, reason) = ProxyConnectionResult.RelayedTags(decision);
            metrics.Connection(outcome, reason);
            metrics.RelayStarted();
        }
    }

    /// <summary>The one place a connection's outcome is logged, counted, and its socket reset or closed.</summary>
    private void Complete(Socket client, ProxyConnectionResult result)
    {
        try
        {
            var destination = result.Destination!;
            switch (result.Outcome)
            {
                case ConnectionOutcome.Relayed:
                    var relay = result.Relay!;
                    options.Metrics?.RelayEnded(relay.BytesAToB, relay.BytesBToA, relay.Duration, relay.FirstCause);
                    ProxyLog.Closed(
                        logger, destination, relay.BytesAToB, relay.BytesBToA, relay.FirstCause, RelayEnds.LogText(relay), relay.Duration.TotalMilliseconds,
                        new ConnectionIdText(result.ConnectionId));
                    if (relay.Framed is { Received: null } && relay.FirstCause == RelayShutdownCause.BReadError && _tunnelCutLines.TryEnter(out long cutBack))
                    {
                        // The line above is Information; a parent killed under live connections must be seen (a trial).
                        ProxyLog.TunnelCut(
                            logger, destination, relay.Error?.Message ?? "the tunnel stream ended before its END frame", options.Tunnel.ToString(), new ConnectionIdText(result.ConnectionId), new HeldBackLines(cutBack));
                    }

                    break;
                case ConnectionOutcome.NotRedirected:
                    ProxyLog.NotRedirected(logger, client.RemoteEndPoint, result.RedirectStatus, result.Detail);
                    break;
                case ConnectionOutcome.Denied:
                    ProxyLog.Denied(logger, destination, result.Decision);
                    options.Denials?.Connection(destination, result.Decision.Reason);
                    break;
                case ConnectionOutcome.ParentRefused when ProxyLog.IsParentLimit(result.ParentStatus, result.Detail):
                    // The parent at a limit (streams, DNS streams, descriptors) refuses every connection an app opens in a
                    // loop, each in a round trip: a line a second, with the count, as the enclave's own limit does.
                    if (_parentLimitLines.TryEnter(out long heldBack))
                    {
                        ProxyLog.ParentAtLimit(logger, destination, result.Detail ?? string.Empty, heldBack);
                    }

                    break;
                case ConnectionOutcome.ParentRefused:
                    ProxyLog.ParentRefused(logger, destination, result.ParentStatus, result.Detail ?? string.Empty, result.ConnectionId);
                    break;
                case ConnectionOutcome.BadParentResponse:
                    ProxyLog.BadParentResponse(logger, destination, result.ReadResult);
                    break;
                case ConnectionOutcome.StatusTimeout:
                    ProxyLog.ParentTimedOut(logger, destination, options.StatusTimeout.TotalMilliseconds);
                    break;
                case ConnectionOutcome.TunnelConnectTimeout:
                    ProxyLog.TunnelConnectTimedOut(logger, destination, options.Tunnel.ToString(), options.StatusTimeout.TotalMilliseconds);
                    break;
                case ConnectionOutcome.TunnelUnavailable when _unavailableLines.TryEnter(out long unavailableBack):
                    // Every connection while the parent is down: the first ten a second, counted.
                    ProxyLog.TunnelUnavailable(logger, destination, options.Tunnel.ToString(), result.Detail ?? string.Empty, new HeldBackLines(unavailableBack));

                    break;
                case ConnectionOutcome.Stopping:
                    // At a stop every connection still being set up ends at once (up to a thousand waiting aside).
                    if (_stoppingLines.TryEnter(out long stoppedBack))
                    {
                        ProxyLog.Stopping(logger, destination, stoppedBack);
                    }

                    break;
                case ConnectionOutcome.SetupShareFull:
                    if (_setupShareLines.TryEnter(out long refusedBack))
                    {
                        ProxyLog.SetupShareFull(logger, destination, client.RemoteEndPoint, result.Detail ?? string.Empty, new HeldBackLines(refusedBack, "refused"));
                    }

                    break;
                case ConnectionOutcome.SetupWaitTimeout:
                    if (_setupWaitLines.TryEnter(out long timedOutBack))
                    {
                        ProxyLog.SetupWaitTimedOut(logger, destination, client.RemoteEndPoint, result.Detail ?? string.Empty, new HeldBackLines(timedOutBack, "refused"));
                    }

                    break;
            }

            if (result.Outcome != ConnectionOutcome.Relayed)
            {
                options.Metrics?.Connection(result.MetricOutcome, result.MetricReason);
            }

            if (result.TunnelError is { } kind)
            {
                options.Metrics?.TunnelError(kind);
            }

            if (options.Audit is { } audit && AuditRecords.ForEnclave(result, options.Relay.TimeProvider.GetUtcNow()) is { } record)
            {
                audit.Write(record);
            }

        }
        finally
        {
            // Closed whatever the lines above do (a library caller's logger may throw): the listener's own close of a
            // socket its handler left open would reset it (SO_LINGER 0, EgressProxy.Bind), cutting a clean end short.
            if (result.ResetsClient)
            {
                SocketReset.Reset(client);
            }
            else
            {
                SocketReset.CloseGracefully(client); // its listener's SO_LINGER 0 is for a process that ends
            }
        }
    }

    /// <summary>
    /// Opens the tunnel stream with the <see cref="TunnelClient"/> (version 2 unless the parent speaks only version 1;
    /// request, then the parent's status); otherwise no stream and the failure. The bytes that arrived after the status
    /// in the same receive are the destination's first bytes (version 1) or the first frames (version 2).
    /// </summary>
    // Pooled state machine: it runs once per connection set up, and a burst of set-ups must not allocate one each.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<(TunnelConnectResult? Tunnel, ProxyConnectionResult? Failure)> OpenTunnelAsync(
        IPEndPoint destination, string? hint, ReadOnlyMemory<byte> early, CancellationToken aborted)
    {
        TunnelConnectResult connected;
        try
        {
            connected = tunnelVersion == TunnelCodec.Version2
                ? await _tunnel.ConnectFramedAsync(destination, hint, early, aborted).ConfigureAwait(false)
                : await _tunnel.ConnectAsync(destination, hint, aborted).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            return (null, ProxyConnectionResult.Failed(ConnectionOutcome.Stopping, destination));
        }

        try
        {
            if (connected.RetriedStale)
            {
                ProxyLog.StalePooledStream(logger, destination, options.Tunnel.ToString());
            }
            else if (connected.Reused)
            {
                options.Metrics?.TunnelStreamReused();
            }

            switch (connected.VersionNews)
            {
                case TunnelVersionNews.Version1Only:
                    ProxyLog.ParentSpeaksVersion1Only(logger, options.Tunnel.ToString(), TunnelVersionProbe.ReprobeInterval.TotalSeconds);
                    break;
                case TunnelVersionNews.StillVersion1Only:
                    ProxyLog.ParentStillVersion1Only(logger, options.Tunnel.ToString());
                    break;
                case TunnelVersionNews.Version2Again:
                    ProxyLog.ParentSpeaksVersion2(logger, options.Tunnel.ToString());
                    break;
            }
        }
        catch
        {
            connected.Socket?.Dispose(); // a logger that throws must not leak the connected stream
            throw;
        }

        return connected.Error switch
        {
            TunnelConnectError.None => (connected, null),
            TunnelConnectError.Refused => (null, ProxyConnectionResult.ParentRefused(destination, connected.Status!.Value, connected.Detail).WithConnectionId(connected.ConnectionId)),
            TunnelConnectError.BadResponse => (null, ProxyConnectionResult.BadParentResponse(destination, connected.ReadResult)),
            TunnelConnectError.StatusTimedOut => (null, ProxyConnectionResult.Failed(ConnectionOutcome.StatusTimeout, destination)),
            TunnelConnectError.TunnelTimedOut => (null, ProxyConnectionResult.Failed(ConnectionOutcome.TunnelConnectTimeout, destination)),
            _ => (null, ProxyConnectionResult.Failed(ConnectionOutcome.TunnelUnavailable, destination, connected.Detail)),
        };
    }
}
