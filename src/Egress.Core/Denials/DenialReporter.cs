using System.Buffers;
using System.Net.Sockets;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;

namespace Egress.Denials;

/// <summary>
/// Sends the enclave's <see cref="DenialTally"/> to the parent every <see cref="Interval"/> when it holds anything, on
/// a tunnel stream of its own (<see cref="TunnelRequestKind.DenialReport"/>; docs/tunnel-protocol.md, "Denial
/// reports"), and once more when the host stops. A report is delivered when the parent has answered its receipt byte
/// (<see cref="DenialReportCodec.Receipt"/>: read whole and logged); one that is not (no parent, a timeout, a reset, a
/// stream closed without the receipt) is counted again into the next.
/// A parent that answers <see cref="TunnelStatus.UnsupportedKind"/> (older than the report) is warned about once and
/// asked again after <see cref="UnsupportedBackoff"/>; the denials of those reports are dropped (the enclave logged
/// each). Every report starts with the enclave's policy digest (<see cref="DenialKind.PolicyDigest"/>), and a report
/// with the digest alone is sent at the first tick and then every <see cref="PolicyInterval"/> when nothing was
/// denied, so that the parent says soon after the enclave starts, and again after its own restart, whether the two
/// read the same policy. Never throws to its caller.
/// </summary>
/// <param name="tally">The counts to send.</param>
/// <param name="tunnel">Where the parent listens.</param>
/// <param name="timeout">How long one report may take, connect to close (the tunnel's status timeout).</param>
/// <param name="time">The clock of the interval, the timeout and the back-off.</param>
/// <param name="logger">Where the reports' lines go.</param>
/// <param name="policy">The enclave's policy digest; null sends none (reports of denials only).</param>
internal sealed class DenialReporter(DenialTally tally, TunnelEndpoint tunnel, TimeSpan timeout, TimeProvider time, ILogger logger, Configuration.PolicyDigest? policy = null)
{
    /// <summary>How often a report with only the policy digest is sent when nothing was denied: 10 min.</summary>
    public static readonly TimeSpan PolicyInterval = TimeSpan.FromMinutes(10);

    /// <summary>How often a report is sent when there is something to report: 10 s.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(10);

    /// <summary>How long the reporter waits before asking a parent that refused the kind again: 10 min (parents are
    /// upgraded in place).</summary>
    public static readonly TimeSpan UnsupportedBackoff = TimeSpan.FromMinutes(10);

    /// <summary>How long the report at a stop may take at most, whatever <c>timeout</c> says.</summary>
    private static readonly TimeSpan StopDeadline = TimeSpan.FromSeconds(2);

    private readonly CancellationTokenSource _stopping = new();

    // Cancels a report in flight: at a stop only once StopDeadline has passed, so that a report the parent has read is
    // not cancelled before its receipt, counted back in and sent again by the last report.
    private readonly CancellationTokenSource _inFlight = new();
    private Task _loop = Task.CompletedTask;
    private long _askAgainAt = long.MinValue;
    private long _policyDueAt = long.MinValue; // the digest alone is due at the first tick
    private bool _refused;

    /// <summary>The period between two reports (<see cref="DefaultInterval"/>; shorter in tests).</summary>
    public TimeSpan Interval { get; init; } = DefaultInterval;

    /// <summary>Starts sending a report every <see cref="Interval"/>.</summary>
    public void Start() => _loop = RunAsync(_stopping.Token);

    /// <summary>Stops the reports, lets one in flight end, then sends what was counted since the last one (all within
    /// 2 s).</summary>
    public async Task StopAsync()
    {
        using var deadline = new CancellationTokenSource(timeout < StopDeadline ? timeout : StopDeadline, time);
        using var onDeadline = deadline.Token.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), _inFlight);
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        await ReportAsync(deadline.Token).ConfigureAwait(false);
    }

    private async Task RunAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(Interval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stopping).ConfigureAwait(false))
            {
                using var deadline = new CancellationTokenSource(timeout, time);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, _inFlight.Token);
                await ReportAsync(linked.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // Stopping: StopAsync sends the last report.
        }
    }

    /// <summary>Sends one report of what the tally holds, if anything, unless a parent that refused the kind is not to
    /// be asked yet.</summary>
    internal async Task ReportAsync(CancellationToken cancellationToken)
    {
        if (time.GetTimestamp() < Volatile.Read(ref _askAgainAt))
        {
            tally.Take(); // logged in the enclave; the parent cannot take them
            return;
        }

        var (records, since) = tally.Take();
        if (records.Count == 0 && (policy is null || time.GetTimestamp() < _policyDueAt))
        {
            return;
        }

        long denials = records.Sum(r => (long)r.Count);
        string? failure;
        try
        {
            failure = await SendAsync(policy is null ? records : [DenialReportCodec.PolicyRecord(policy), .. records], cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            failure = $"no answer within {timeout.TotalMilliseconds:0} ms";
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
        {
            failure = ex.Message;
        }

        if (failure == UnsupportedFailure)
        {
            Volatile.Write(ref _askAgainAt, time.GetTimestamp() + (long)(UnsupportedBackoff.TotalSeconds * time.TimestampFrequency));
            if (!_refused)
            {
                _refused = true;
                DenialLog.Unsupported(logger, tunnel.ToString(), denials, UnsupportedBackoff.TotalMinutes);
            }
            else
            {
                DenialLog.NotDelivered(logger, tunnel.ToString(), "the parent still answers UnsupportedKind; dropped", denials);
            }

            return;
        }

        if (failure is not null)
        {
            tally.PutBack(records, since);
            DenialLog.NotDelivered(logger, tunnel.ToString(), failure, denials);
            return;
        }

        if (_refused)
        {
            _refused = false;
            DenialLog.SupportedAgain(logger, tunnel.ToString());
        }

        _policyDueAt = time.GetTimestamp() + (long)(PolicyInterval.TotalSeconds * time.TimestampFrequency);
        if (records.Count == 0)
        {
            DenialLog.PolicyDelivered(logger, tunnel.ToString(), policy!.ToString());
            return;
        }

        DenialLog.Delivered(logger, tunnel.ToString(), records.Count, denials, records[0].Seconds);
    }

    private const string UnsupportedFailure = "UnsupportedKind";

    /// <returns>Null when delivered; <see cref="UnsupportedFailure"/> when the parent does not know the kind; else why not.</returns>
    private async Task<string?> SendAsync(List<DenialRecord> records, CancellationToken cancellationToken)
    {
        using Socket stream = await tunnel.ConnectAsync(cancellationToken).ConfigureAwait(false);
        var (result, response, following) = await TunnelHandshake.RequestAsync(stream, TunnelRequest.ForDenialReport(), cancellationToken).ConfigureAwait(false);
        if (result != TunnelReadResult.Complete)
        {
            return $"the parent's answer could not be read: {result}";
        }

        if (response.Status == TunnelStatus.UnsupportedKind)
        {
            return UnsupportedFailure;
        }

        if (response.Status != TunnelStatus.Ok || !following.IsEmpty)
        {
            return response.Status != TunnelStatus.Ok ? $"parent answered {response.Status}: {response.Detail}" : "the parent sent bytes after Ok";
        }

        byte[] buffer = ArrayPool<byte>.Shared.Rent(DenialReportCodec.MaxReportLength);
        try
        {
            int length = 0;
            foreach (var record in records)
            {
                length += DenialReportCodec.WriteRecord(record, buffer.AsSpan(length));
            }

            buffer[length++] = DenialReportCodec.End;
            await TunnelHandshake.SendAllAsync(stream, buffer.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
            stream.Shutdown(SocketShutdown.Send);

            // The parent answers one receipt byte once it has read the report whole and logged it, then closes.
            int read = await stream.ReceiveAsync(buffer.AsMemory(0, 1), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            return read == 0 ? "the parent closed the stream without a receipt (it did not take the report, or it is stopping)"
                : buffer[0] == DenialReportCodec.Receipt ? null
                : $"the parent answered 0x{buffer[0]:X2}, not a receipt";
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
