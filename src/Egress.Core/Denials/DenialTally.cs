using System.Net;
using Egress.Diagnostics;
using Egress.Policy;
using Egress.Tls;
using Egress.Tunnel;

namespace Egress.Denials;

/// <summary>
/// The enclave's counts of what its own policy denied since the last report (<see cref="DenialReporter"/> takes them):
/// one count per kind, reason and subject, at most <see cref="DenialReportCodec.MaxRecords"/> of them, so a flood of
/// denials to ever new destinations costs a fixed amount of memory. Past <see cref="MaxNamed"/> subjects, further ones
/// are counted without their subject (<c>(kind, reason, "")</c>), and past that, as reason <c>various</c>. Thread-safe.
/// </summary>
/// <param name="time">The clock the period of each report is measured on.</param>
/// <param name="detail">Whether subjects are kept (<see cref="DenialDetail.Destinations"/>) or withheld.</param>
internal sealed class DenialTally(TimeProvider time, DenialDetail detail)
{
    /// <summary>The most subjects one report names; later ones in the same period are counted without theirs.</summary>
    public const int MaxNamed = 56;

    /// <summary>The reason of the counts kept when even the subject-less counts are full.</summary>
    public const string VariousReason = "various";

    // Leaves room within MaxRecords for the three (kind, "various", "") counts and the report's policy record.
    private const int MaxCounts = DenialReportCodec.MaxRecords - 4;

    private readonly object _lock = new();
    private Dictionary<(DenialKind Kind, string Reason, string Subject), uint> _counts = [];
    private long _since;

    /// <summary>Whether subjects are kept.</summary>
    public DenialDetail Detail => detail;

    /// <summary>Counts a TCP connection the enclave's policy denied.</summary>
    /// <param name="destination">The connection's original destination.</param>
    /// <param name="reason">The decision's reason.</param>
    public void Connection(IPEndPoint destination, DecisionReason reason) =>
        Add(DenialKind.Connection, MetricTag.Of(reason), detail == DenialDetail.Destinations ? destination.ToString() : string.Empty, 1);

    /// <summary>Counts a DNS question the enclave's policy refused.</summary>
    /// <param name="name">The question's name as logged (<c>.</c> for the root).</param>
    /// <param name="type">The question's type as logged (<c>A</c>, <c>TYPE65534</c>).</param>
    /// <param name="reason">The decision's reason.</param>
    public void DnsQuestion(string name, string type, DecisionReason reason) =>
        Add(DenialKind.DnsQuestion, MetricTag.Of(reason), detail == DenialDetail.Destinations ? DenialReportCodec.Subject($"{name} {type}") : string.Empty, 1);

    /// <summary>Counts a TLS connection reset by the enclave's server-name check.</summary>
    /// <param name="destination">The connection's destination.</param>
    /// <param name="serverName">The ClientHello's server name; null when it had none.</param>
    /// <param name="reason">Why it was refused.</param>
    public void ServerName(EndPoint destination, string? serverName, ServerNameRefusal reason) =>
        Add(DenialKind.ServerName, MetricTag.Of(reason), detail == DenialDetail.Destinations ? DenialReportCodec.Subject(destination + DenialReportCodec.ServerNameWords + (serverName ?? DenialReportCodec.NoServerName)) : string.Empty, 1);

    /// <summary>Takes the counts of the period that ends now, leaving none.</summary>
    /// <returns>The records (empty when nothing was denied), and the start of their period on the tally's
    /// timestamp clock, for <see cref="PutBack"/>.</returns>
    public (List<DenialRecord> Records, long Since) Take()
    {
        Dictionary<(DenialKind Kind, string Reason, string Subject), uint> counts;
        long since;
        lock (_lock)
        {
            if (_counts.Count == 0)
            {
                return ([], 0);
            }

            counts = _counts;
            since = _since;
            _counts = [];
        }

        double seconds = Math.Ceiling(time.GetElapsedTime(since).TotalSeconds);
        ushort period = (ushort)Math.Clamp(seconds, 0, ushort.MaxValue);
        var records = new List<DenialRecord>(counts.Count);
        foreach (var ((kind, reason, subject), count) in counts)
        {
            records.Add(new DenialRecord(kind, reason, count, period, subject));
        }

        return (records, since);
    }

    /// <summary>Counts again what a report could not deliver, within the same bounds, and keeps its period's start if
    /// it is the earlier one: the next report covers both periods.</summary>
    /// <param name="records">The records of <see cref="Take"/>.</param>
    /// <param name="since">Their period's start, from <see cref="Take"/>.</param>
    public void PutBack(IReadOnlyList<DenialRecord> records, long since)
    {
        foreach (var record in records)
        {
            Add(record.Kind, record.Reason, record.Subject, record.Count, since);
        }
    }

    private void Add(DenialKind kind, string reason, string subject, uint count, long? since = null)
    {
        lock (_lock)
        {
            long start = since ?? time.GetTimestamp();
            if (_counts.Count == 0 || start < _since)
            {
                _since = start;
            }

            var key = (kind, reason, subject);
            if (!_counts.ContainsKey(key) && _counts.Count >= (subject.Length == 0 ? MaxCounts : MaxNamed))
            {
                key = (kind, reason, string.Empty);
                if (!_counts.ContainsKey(key) && _counts.Count >= MaxCounts)
                {
                    key = (kind, VariousReason, string.Empty);
                }
            }

            _counts.TryGetValue(key, out uint before);
            _counts[key] = before > uint.MaxValue - count ? uint.MaxValue : before + count;
        }
    }
}
