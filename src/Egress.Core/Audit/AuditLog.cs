using Egress.Diagnostics;
using System.Buffers;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace Egress.Audit;

/// <summary>
/// Writes <see cref="AuditRecord"/>s as JSON lines (one object per line, UTF-8, RFC 8259) to a file, appended, or to
/// standard output. Fields, in this order, absent when null: <c>time</c> (RFC 3339 UTC), <c>side</c>,
/// <c>connection_id</c> (16 hex digits), <c>cid</c>, <c>destination</c> (<c>ip:port</c>, IPv6 in brackets),
/// <c>name</c>, <c>host_hint</c> (the parent's), <c>entry</c>, <c>decision</c>, <c>reason</c>, <c>decision_text</c>, <c>server_name</c>,
/// <c>outcome</c>, <c>detail</c>, <c>bytes_out</c>, <c>bytes_in</c>, <c>duration_ms</c>, <c>close_cause</c>; a record
/// of an enclave's denial report has <c>denial_report</c> (<c>kind</c>, <c>subject</c> when named, <c>count</c>,
/// <c>period_s</c>) in place of the last four.
/// <para>
/// A connection never waits for the audit: a record is serialized at once and queued (at most
/// <see cref="Capacity"/> lines); one writer drains the queue and flushes when it is empty. A record that finds the
/// queue full is dropped, counted and reported in a Warning line (at most one a second), never silently lost.
/// </para>
/// </summary>
internal sealed class AuditLog : IAsyncDisposable
{
    /// <summary>The value of <c>audit_log</c> that writes to standard output.</summary>
    public const string StandardOutput = "stdout";

    /// <summary>The most lines queued for the writer.</summary>
    public const int Capacity = 65_536;

    private readonly Channel<byte[]> _queue = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(Capacity)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.Wait, // so that TryWrite says false when full (DropWrite would drop and say true)
    });

    private readonly Stream _output;
    private readonly ILogger _logger;
    private readonly Task _writer;
    private readonly LogRateLimit _dropLines;
    private long _dropped;

    /// <param name="output">Where lines go; disposed with the log (unless it is standard output).</param>
    /// <param name="target">What <paramref name="output"/> is, for log lines.</param>
    /// <param name="logger">Where write failures and drops are reported.</param>
    /// <param name="time">The clock of the drop lines' rate limit.</param>
    internal AuditLog(Stream output, string target, ILogger logger, TimeProvider time)
    {
        _output = output;
        Target = target;
        _logger = logger;
        _dropLines = new LogRateLimit(time, LogRateLimit.DefaultInterval);
        _writer = Task.Run(WriteAsync);
    }

    /// <summary>Gets where the lines go: <see cref="StandardOutput"/> or the file's path.</summary>
    public string Target { get; }

    /// <summary>Gets how many records were dropped because the queue was full.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>
    /// Opens the audit log named by an <c>audit_log</c> setting: <see cref="StandardOutput"/>, or a file path (created
    /// with mode 0600 when missing, appended to otherwise).
    /// </summary>
    /// <exception cref="IOException">The file cannot be opened (its folder is missing, a read-only file system).</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be written by this process.</exception>
    public static AuditLog Open(string target, ILogger logger, TimeProvider time)
    {
        if (target == StandardOutput)
        {
            return new AuditLog(Console.OpenStandardOutput(), target, logger, time);
        }

        var options = new FileStreamOptions
        {
            Mode = FileMode.Append,
            Access = FileAccess.Write,
            Share = FileShare.Read,
            BufferSize = 0,
        };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        return new AuditLog(new FileStream(target, options), target, logger, time);
    }

    /// <summary>Serializes and queues one record; never blocks and never throws for a full queue (the record is then counted as dropped).</summary>
    public void Write(in AuditRecord record)
    {
        if (!_queue.Writer.TryWrite(Serialize(record)))
        {
            long dropped = Interlocked.Increment(ref _dropped);
            if (_dropLines.TryEnter(out _))
            {
                AuditLogLines.Dropped(_logger, Target, dropped, Capacity);
            }
        }
    }

    /// <summary>Writes what is queued, then closes the output.</summary>
    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _writer.ConfigureAwait(false);
        if (Target != StandardOutput)
        {
            await _output.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Quotes as <c>\"</c>, not <c>\u0022</c>, so that a record reads by eye (a new user's trial); control
    /// characters are still escaped, so a record stays one line whatever a name holds. Not for HTML.</summary>
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>One record as one JSON object and a line feed.</summary>
    internal static byte[] Serialize(in AuditRecord record)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer, WriterOptions))
        {
            json.WriteStartObject();
            json.WriteString("time"u8, record.Time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture));
            json.WriteString("side"u8, record.Side);
            if (record.ConnectionId is { } id)
            {
                json.WriteString("connection_id"u8, id.ToString("x16", CultureInfo.InvariantCulture));
            }

            if (record.Cid is { } cid)
            {
                json.WriteNumber("cid"u8, cid);
            }

            if (record.Destination is { } destination)
            {
                json.WriteString("destination"u8, destination.ToString());
            }

            WriteIfPresent(json, "name"u8, record.Name);
            WriteIfPresent(json, "host_hint"u8, record.HostHint);
            WriteIfPresent(json, "entry"u8, record.Entry);
            json.WriteString("decision"u8, record.Decision);
            json.WriteString("reason"u8, record.Reason);
            json.WriteString("decision_text"u8, record.DecisionText);
            WriteIfPresent(json, "server_name"u8, record.ServerName);
            json.WriteString("outcome"u8, record.Outcome);
            WriteIfPresent(json, "detail"u8, record.Detail);
            if (record.DenialReport is { } report)
            {
                json.WriteStartObject("denial_report"u8);
                json.WriteString("kind"u8, Enum.IsDefined(report.Kind) ? MetricTag.Of(report.Kind) : "other");
                WriteIfPresent(json, "subject"u8, report.Subject.Length > 0 ? report.Subject : null);
                json.WriteNumber("count"u8, report.Count);
                json.WriteNumber("period_s"u8, report.Seconds);
                json.WriteEndObject();
            }
            else
            {
                json.WriteNumber("bytes_out"u8, record.BytesOut);
                json.WriteNumber("bytes_in"u8, record.BytesIn);
                json.WriteNumber("duration_ms"u8, Math.Round(record.Duration.TotalMilliseconds, 3));
                WriteIfPresent(json, "close_cause"u8, record.CloseCause);
            }

            json.WriteEndObject();
        }

        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteIfPresent(Utf8JsonWriter json, ReadOnlySpan<byte> name, string? value)
    {
        if (value is not null)
        {
            json.WriteString(name, value);
        }
    }

    private async Task WriteAsync()
    {
        var reader = _queue.Reader;
        bool failed = false;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (reader.TryRead(out byte[]? line))
            {
                if (failed)
                {
                    Interlocked.Increment(ref _dropped);
                    continue;
                }

                try
                {
                    await _output.WriteAsync(line).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is IOException or ObjectDisposedException or NotSupportedException)
                {
                    failed = true; // a full disk or a closed pipe: reported once; the records after it are counted as dropped
                    Interlocked.Increment(ref _dropped);
                    AuditLogLines.WriteFailed(_logger, Target, ex.Message);
                }
            }

            if (!failed)
            {
                try
                {
                    await _output.FlushAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is IOException or ObjectDisposedException or NotSupportedException)
                {
                    failed = true;
                    AuditLogLines.WriteFailed(_logger, Target, ex.Message);
                }
            }
        }
    }
}
