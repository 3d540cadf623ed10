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
/// (event 232, reports from one gateway at most one a second, the rest counted by the held-back summary) and counts
/// each in <c>egress.enclave.denials</c>. The bytes are the enclave's, so untrusted: a reason the parent does not know
/// is counted as <c>other</c> (a peer cannot add series), and a report that is malformed, too long or cut short is
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

    /// <summary>The most report streams served at once per gateway (per <c>[[host.enclaves]]</c> entry): an enclave sends
    /// one at a time, and each holds a stream slot and a report's buffer (<see cref="DenialReportCodec.MaxReportLength"/>)
    /// while open. One beyond is refused like a stream beyond <c>host.max_streams</c>; the enclave counts its report
    /// into the next.</summary>
    public const int MaxOpen = 4;

    /// <summary>The refusal's detail for a report stream beyond <see cref="MaxOpen"/>.</summary>
    public static readonly string LimitReason = $"denial report limit reached ({MaxOpen} open at once)";

    private readonly LogRateLimit _reportLines = new(options.Relay.TimeProvider, LogRateLimit.DefaultInterval, logger, 232);

    /// <summary>Serves one report stream to its end.</summary>
    /// <returns>What the stream came to: <see cref="StreamOutcome.DenialReport"/>, or <see cref="StreamOutcome.StreamFailed"/>
    /// with the fault when the report was not whole.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="aborted"/> was cancelled (a stop).</exception>
    /// <exception cref="SocketException">Sending the status failed.</exception>
    public async Task<GatewayStreamResult> ServeAsync(Socket tunnel, TunnelRequest request, CancellationToken aborted)
    {
        await TunnelHandshake.SendResponseAsync(tunnel, new TunnelResponse(TunnelStatus.Ok), aborted).ConfigureAwait(false);
        string enclave = options.PeerCid(tunnel) is { } cid ? $"enclave CID {cid}" : "enclave";
        var records = new List<DenialRecord>();
        string? fault = null;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(DenialReportCodec.MaxReportLength);
        try
        {
            using var deadline = new CancellationTokenSource(options.HeaderTimeout, options.Relay.TimeProvider);
            using var onAbort = aborted.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), deadline);
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
                    fault = $"no end byte within {options.HeaderTimeout.TotalMilliseconds:0} ms";
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

        bool log = _reportLines.TryEnter(out long heldBack);
        if (log && heldBack > 0)
        {
            // The count the rate limit hands to the line let through; its summary (event 16) reports only a flood that ended.
            GatewayLog.EnclaveDenialsHeldBack(logger, heldBack);
        }

        foreach (var record in records.Take(DenialReportCodec.MaxRecords))
        {
            options.Metrics?.EnclaveDenials(
                Enum.IsDefined(record.Kind) ? MetricTag.Of(record.Kind) : "other", KnownReasons.Contains(record.Reason) ? record.Reason : "other", record.Count);
            if (log)
            {
                GatewayLog.EnclaveDenied(logger, enclave, record.Count, What(record), record.Reason, record.Seconds);
            }
        }

        return fault is null
            ? GatewayStreamResult.DenialReportRead(request)
            : GatewayStreamResult.Failed($"denial report from the {enclave} not whole: {fault} (the {Math.Min(records.Count, DenialReportCodec.MaxRecords)} records before it were logged)");
    }

    /// <summary>What a record counts, after its count: <c>connections to 198.51.100.7:443</c>, <c>DNS question for
    /// evil.example A</c>, <c>TLS connections to 198.51.100.7:443 server name other.example</c>.</summary>
    internal static string What(in DenialRecord record)
    {
        bool one = record.Count == 1;
        string? subject = record.Subject.Length > 0 ? record.Subject : null;
        return record.Kind switch
        {
            DenialKind.Connection => (one ? "connection" : "connections") + (subject is null ? NotNamed : $" to {subject}"),
            DenialKind.DnsQuestion => (one ? "DNS question" : "DNS questions") + (subject is null ? NotNamed : $" for {subject}"),
            DenialKind.ServerName => (one ? "TLS connection" : "TLS connections") + " by the server-name check" + (subject is null ? NotNamed : $": {subject}"),
            _ => $"denials of kind {(byte)record.Kind}" + (subject is null ? NotNamed : $": {subject}"),
        };
    }

    private const string NotNamed = " (not named: enclave.report_denials = \"counts\", or past the destinations one report names)";
}
