using System.Buffers;
using System.Net.Sockets;
using Egress.Diagnostics;
using Egress.Policy;
using Egress.Tls;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;

namespace Egress.Gateway;

/// <summary>
/// The parent's side of a denial report (<see cref="TunnelRequestKind.DenialReport"/>; docs/tunnel-protocol.md, "Denial
/// reports"): answers Ok, reads the records under the header timeout until the end byte, logs one line per record
/// (event 232; one report's lines a second per enclave CID, the reports held back counted by the next line let
/// through, event 234, or the held-back summary), counts each in <c>egress.enclave.denials</c>, writes each to the
/// audit log when there is one (not rate-limited), compares the enclave's policy digest (the report's first record,
/// <see cref="DenialKind.PolicyDigest"/>) with this gateway's, and answers the receipt byte. The bytes are the enclave's, so untrusted: a reason the parent does not know
/// is counted as <c>other</c> (a peer cannot add series), a subject in no shape egress-enclave writes
/// (<see cref="DenialReportCodec.IsSubjectShape"/>) is shown as <see cref="NotShown"/>, and a report that is malformed, too long or cut short is
/// logged once (event 209, "stream failed") after the records read before the fault.
/// </summary>
/// <param name="options">The gateway's settings: the header timeout, the clock, the metrics, the peer's CID.</param>
/// <param name="logger">Where the lines go.</param>
internal sealed class DenialReportReceiver(TunnelGatewayOptions options, ILogger logger)
{
    private static readonly HashSet<string> KnownReasons =
    [
        .. Enum.GetValues<DecisionReason>().Select(MetricTag.Of),
        .. Enum.GetValues<ServerNameRefusal>().Select(MetricTag.Of),
        Denials.DenialTally.VariousReason,
    ];

    /// <summary>The most report streams read at once per gateway (per <c>[[host.enclaves]]</c> entry): an enclave sends
    /// one at a time, and each holds a report's buffer (<see cref="DenialReportCodec.MaxReportLength"/>) while open. A
    /// report stream beyond them ends the oldest one of its own peer (VSOCK CID) still being read, or the oldest of all
    /// when its peer has none (<see cref="EvictedFault"/>), not itself: any process in the enclave can open report
    /// streams and hold them for the header timeout, and refusing the newest let it keep egress-enclave's reports out
    /// for as long as it held them. A peer that keeps opening report streams can still end egress-enclave's read when
    /// they share a CID; an ended read logs none of its records, and the enclave, with no receipt, sends them again.</summary>
    public const int MaxOpen = 4;

    /// <summary>The fault of a report stream ended for a newer one (<see cref="MaxOpen"/>).</summary>
    public static readonly string EvictedFault = $"ended for a newer report stream ({MaxOpen} were being read: a peer holding report streams open)";

    // The report streams being read, oldest first, each with its peer and what ends it for a newer one.
    private readonly LinkedList<(uint? Cid, CancellationTokenSource Evict)> _reading = new();

    /// <summary>How many peers (VSOCK CIDs) get a line limit of their own; past them, the rest share one.</summary>
    private const int MaxLimitedPeers = 256;

    // One report's lines a second per peer: two enclaves on one parent (no [[host.enclaves]], or one "any" entry) whose
    // timers tick within the same second must not hide each other's reports for good. A CID is the peer's VSOCK address,
    // which it cannot choose; a unix: or tcp: tunnel has none, and its streams share one limit.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<uint, LogRateLimit> _peerLines = new();
    private readonly LogRateLimit _sharedLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 232);

    private LogRateLimit LinesOf(uint? cid) => LimitOf(_peerLines, _sharedLines, cid, 232);

    // The policy comparison's lines (events 235, 236): a limit of their own, so that a peer's denial lines do not hold
    // back the comparison of egress-enclave's digest.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<uint, LogRateLimit> _peerPolicyLines = new();
    private readonly LogRateLimit _sharedPolicyLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 236);

    private LogRateLimit PolicyLinesOf(uint? cid) => LimitOf(_peerPolicyLines, _sharedPolicyLines, cid, 236);

    private LogRateLimit LimitOf(System.Collections.Concurrent.ConcurrentDictionary<uint, LogRateLimit> perPeer, LogRateLimit shared, uint? cid, int eventId) =>
        cid is not { } peer ? shared
        : perPeer.TryGetValue(peer, out var limit) ? limit
        : perPeer.Count >= MaxLimitedPeers ? shared
        : perPeer.GetOrAdd(peer, _ => new LogRateLimit(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, eventId));

    /// <summary>Serves one report stream to its end.</summary>
    /// <returns>What the stream came to: <see cref="StreamOutcome.DenialReport"/>, or <see cref="StreamOutcome.StreamFailed"/>
    /// with the fault when the report was not whole.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="aborted"/> was cancelled (a stop).</exception>
    /// <exception cref="SocketException">Sending the status failed.</exception>
    public async Task<GatewayStreamResult> ServeAsync(Socket tunnel, TunnelRequest request, CancellationToken aborted)
    {
        uint? cid = options.PeerCid(tunnel);

        // Not disposed: a newer stream may cancel it after this one has ended (it has no timer and no wait handle, so
        // there is nothing to release), and a dispose could race that cancel.
        var evicted = new CancellationTokenSource();
        LinkedListNode<(uint? Cid, CancellationTokenSource Evict)> reading;
        CancellationTokenSource? oldest = null;
        lock (_reading)
        {
            if (_reading.Count >= MaxOpen)
            {
                var node = _reading.First;
                while (node is not null && node.Value.Cid != cid)
                {
                    node = node.Next;
                }

                node ??= _reading.First!;
                oldest = node.Value.Evict;
                _reading.Remove(node);
            }

            reading = _reading.AddLast((cid, evicted));
        }

        try
        {
            oldest?.Cancel();
            return await ReadAsync(tunnel, request, cid, evicted.Token, aborted).ConfigureAwait(false);
        }
        finally
        {
            lock (_reading)
            {
                if (reading.List is not null)
                {
                    _reading.Remove(reading);
                }
            }
        }
    }

    private async Task<GatewayStreamResult> ReadAsync(Socket tunnel, TunnelRequest request, uint? cid, CancellationToken evicted, CancellationToken aborted)
    {
        await TunnelHandshake.SendResponseAsync(tunnel, new TunnelResponse(TunnelStatus.Ok), aborted).ConfigureAwait(false);
        string enclave = cid is { } peer ? $"enclave CID {peer}" : "enclave";
        var records = new List<DenialRecord>();
        string? fault = null;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(DenialReportCodec.MaxReportLength);
        try
        {
            using var deadline = new CancellationTokenSource(options.HeaderTimeout, options.Relay.TimeProvider);
            using var onAbort = aborted.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), deadline);
            using var onEvicted = evicted.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), deadline);
            int filled = 0, parsed = 0;
            while (fault is null)
            {
                var result = DenialReportCodec.TryReadRecord(buffer.AsSpan(parsed, filled - parsed), out DenialRecord record, out int consumed);
                parsed += consumed;
                if (result == DenialReportReadResult.End)
                {
                    break;
                }

                if (result == DenialReportReadResult.Complete)
                {
                    records.Add(record);
                    fault = records.Count > DenialReportCodec.MaxRecords ? $"more than {DenialReportCodec.MaxRecords} records" : null;
                    continue;
                }

                if (result != DenialReportReadResult.Incomplete)
                {
                    fault = $"record {records.Count + 1}: {result}";
                    break;
                }

                if (filled == DenialReportCodec.MaxReportLength)
                {
                    fault = $"longer than {DenialReportCodec.MaxReportLength} bytes";
                    break;
                }

                int read;
                try
                {
                    read = await tunnel.ReceiveAsync(buffer.AsMemory(filled, DenialReportCodec.MaxReportLength - filled), SocketFlags.None, deadline.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
                {
                    fault = evicted.IsCancellationRequested ? EvictedFault : $"no end byte within {options.HeaderTimeout.TotalMilliseconds:0} ms";
                    break;
                }

                if (read == 0)
                {
                    fault = "the stream ended before the end byte";
                }

                filled += read;
            }
        }
        catch (SocketException ex)
        {
            fault = ex.Message;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        if (evicted.IsCancellationRequested && fault == EvictedFault)
        {
            // Ended for a newer stream: without a receipt the enclave sends these again, so they are not logged, counted
            // or audited twice (a peer could end egress-enclave's read at will).
            records.Clear();
        }

        // A report with no record (empty, or ended before its first) has no line to write and takes no turn of the
        // limit: a peer's empty reports would otherwise hold back egress-enclave's lines.
        long heldBack = 0;
        bool log = records.Count > 0 && LinesOf(cid).TryEnter(out heldBack);
        if (log && heldBack > 0)
        {
            // The count the rate limit hands to the line let through; its summary (event 16) reports only a flood that ended.
            GatewayLog.EnclaveDenialsHeldBack(logger, enclave, heldBack);
        }

        DateTimeOffset now = options.Relay.TimeProvider.GetUtcNow();
        bool first = true;
        foreach (var received in records.Take(DenialReportCodec.MaxRecords))
        {
            // The subject is the peer's text: one in no shape egress-enclave writes is not shown (nor audited, nor
            // compared), so that it cannot pass for another line of this log.
            bool shaped = DenialReportCodec.IsSubjectShape(received.Kind, received.Subject);
            var record = shaped ? received : received with { Subject = NotShown(received.Subject) };
            if (record.Kind == DenialKind.PolicyDigest)
            {
                // The report's first record only, whether or not the report's lines were let through (a peer's report
                // in the same second must not keep the comparison out), under a limit of its own (ComparePolicy).
                if (first && shaped)
                {
                    ComparePolicy(cid, enclave, record.Subject);
                }

                first = false;
                continue;
            }

            first = false;

            options.Metrics?.EnclaveDenials(
                Enum.IsDefined(record.Kind) ? MetricTag.Of(record.Kind) : "other", KnownReasons.Contains(record.Reason) ? record.Reason : "other", record.Count);
            if (log)
            {
                GatewayLog.EnclaveDenied(logger, enclave, record.Count, What(record), record.Subject.Length > 0 ? record.Subject : NotNamed, record.Reason, record.Seconds);
            }

            // Every record, also those whose lines the rate limit held back: the audit log is the complete account.
            options.Audit?.Write(Audit.AuditRecords.ForDenialReport(record, cid, What(record), now));
        }

        if (fault is null)
        {
            // The enclave counts the report delivered only on this byte: a stream closed without it is counted into its next.
            await TunnelHandshake.SendAllAsync(tunnel, new[] { DenialReportCodec.Receipt }, aborted).ConfigureAwait(false);
            return GatewayStreamResult.DenialReportRead(request);
        }

        string logged = fault == EvictedFault
            ? "none of its records were logged: with no receipt the enclave sends them again"
            : $"the {Math.Min(records.Count, DenialReportCodec.MaxRecords)} records before it were logged";
        return GatewayStreamResult.Failed($"denial report from the {enclave} not whole: {fault} ({logged})");
    }

    // The last policy digest each peer reported (a CID's, or one slot for streams without a CID), so that a match is
    // said once and a mismatch once per digest the enclave reports, not every 10 s.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<uint, string> _peerPolicies = new();
    private const uint NoCid = uint.MaxValue; // VMADDR_CID_ANY: never a peer's CID

    /// <summary>Compares the enclave's policy digest with this gateway's (the parent's file, or the enclave's
    /// <c>[[host.enclaves]]</c> file): a Warning when they differ (event 236), Information when they match (event 235),
    /// each once per digest a peer reports, and at most one such line a second per peer: a peer's own reports (policy
    /// records alternating two digests, as fast as streams open) would otherwise each be a line. A line held back is
    /// not remembered as said, so the next report with that digest says it.</summary>
    private void ComparePolicy(uint? cid, string enclave, string theirs)
    {
        if (options.PolicyDigest is not { } ours)
        {
            return;
        }

        uint peer = cid ?? NoCid;
        if (!_peerPolicies.TryGetValue(peer, out string? last) && _peerPolicies.Count >= MaxLimitedPeers)
        {
            peer = NoCid; // past the first 256 CIDs, the rest share one slot (said more often, never held in more memory)
        }

        if ((_peerPolicies.TryGetValue(peer, out last) && last == theirs) || !PolicyLinesOf(cid).TryEnter(out _))
        {
            return;
        }

        _peerPolicies[peer] = theirs;
        string expected = DenialReportCodec.PolicySubject(ours);
        if (theirs == expected)
        {
            GatewayLog.EnclavePolicyMatches(logger, enclave, ours.ToString());
            return;
        }

        string shown = theirs.StartsWith("sha256:", StringComparison.Ordinal) && theirs.Length > 19 ? theirs[..19] : theirs;
        GatewayLog.EnclavePolicyDiffers(logger, enclave, shown, ours.ToString(), options.PolicySource ?? "this parent's enclave.toml");
    }

    /// <summary>What a record counts, between its count and its subject: <c>connections to</c>, <c>DNS question for</c>,
    /// <c>TLS connections at the server-name check:</c>, <c>denials of kind 9:</c>.</summary>
    internal static string What(in DenialRecord record)
    {
        bool one = record.Count == 1;
        return record.Kind switch
        {
            DenialKind.Connection => one ? "connection to" : "connections to",
            DenialKind.DnsQuestion => one ? "DNS question for" : "DNS questions for",
            DenialKind.ServerName => (one ? "TLS connection" : "TLS connections") + " at the server-name check:",
            _ => $"denials of kind {(byte)record.Kind}:",
        };
    }

    /// <summary>What is shown in place of a subject in no shape egress-enclave writes
    /// (<see cref="DenialReportCodec.IsSubjectShape"/>).</summary>
    internal static string NotShown(string subject) =>
        $"(a subject in no shape egress-enclave writes, {subject.Length} characters, not shown)";

    /// <summary>The subject of a record that names none: the enclave withholds them (<c>"counts"</c>), or the record
    /// counts what one report could not name.</summary>
    internal const string NotNamed = "(not named: enclave.report_denials = \"counts\", or past the destinations one report names)";
}
