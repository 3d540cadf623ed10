using System.Net;
using System.Text;
using System.Text.Json;
using Egress.Audit;
using Microsoft.Extensions.Logging;

namespace Egress.Tests.Audit;

public sealed class AuditLogTests
{
    private static AuditRecord Sample(string? detail = null) => new()
    {
        Time = new DateTimeOffset(2026, 11, 30, 9, 30, 1, 250, TimeSpan.Zero),
        Side = "enclave",
        ConnectionId = 0x0123456789abcdef,
        Destination = new IPEndPoint(IPAddress.Parse("2001:db8::10"), 443),
        Name = "www.allowed.test",
        Entry = "www.allowed.test",
        Decision = "allowed",
        Reason = "learned",
        DecisionText = "allowed: learned from www.allowed.test, expires in 30s",
        ServerName = "www.allowed.test",
        Outcome = "allowed",
        Detail = detail,
        BytesOut = 517,
        BytesIn = 65_536,
        Duration = TimeSpan.FromMilliseconds(12.3456),
        CloseCause = "BothCompleted",
    };

    [Test]
    public void ARecordIsOneJsonObjectOnOneLineWithItsFieldsInOrder()
    {
        string line = Encoding.UTF8.GetString(AuditLog.Serialize(Sample()));
        Assert.That(line, Is.EqualTo(
            "{\"time\":\"2026-11-30T09:30:01.2500000Z\",\"side\":\"enclave\",\"connection_id\":\"0123456789abcdef\"," +
            "\"destination\":\"[2001:db8::10]:443\",\"name\":\"www.allowed.test\",\"entry\":\"www.allowed.test\",\"decision\":\"allowed\"," +
            "\"reason\":\"learned\",\"decision_text\":\"allowed: learned from www.allowed.test, expires in 30s\"," +
            "\"server_name\":\"www.allowed.test\",\"outcome\":\"allowed\",\"bytes_out\":517,\"bytes_in\":65536," +
            "\"duration_ms\":12.346,\"close_cause\":\"BothCompleted\"}\n"));
    }

    [Test]
    public void AbsentFieldsAreLeftOutAndHostileTextStaysOneLine()
    {
        var record = Sample("line one\nline two \"quoted\" \u0000") with { ConnectionId = null, ServerName = null, Name = null, CloseCause = null };
        string line = Encoding.UTF8.GetString(AuditLog.Serialize(record));
        using var parsed = JsonDocument.Parse(line);
        Assert.Multiple(() =>
        {
            Assert.That(line.IndexOf('\n'), Is.EqualTo(line.Length - 1), "one line");
            Assert.That(parsed.RootElement.TryGetProperty("connection_id", out _), Is.False);
            Assert.That(parsed.RootElement.TryGetProperty("server_name", out _), Is.False);
            Assert.That(parsed.RootElement.TryGetProperty("close_cause", out _), Is.False);
            Assert.That(parsed.RootElement.GetProperty("detail").GetString(), Is.EqualTo("line one\nline two \"quoted\" \u0000"));
        });
    }

    // A new user's trial: decision_text's quotes read \u0022 by eye.
    [Test]
    public void QuotesReadAsQuotesAndControlCharactersAreEscaped()
    {
        string line = Encoding.UTF8.GetString(AuditLog.Serialize(Sample("port not allowed by \"api.example.com:443\"\u001b[2J\r\u2028")));
        Assert.Multiple(() =>
        {
            Assert.That(line, Does.Contain("\"detail\":\"port not allowed by \\\"api.example.com:443\\\"\\u001B[2J\\r\\u2028\""));
            Assert.That(line.IndexOf('\n'), Is.EqualTo(line.Length - 1), "one line");
        });
    }

    [Test]
    public async Task AFileIsAppendedToAndCreatedReadableByItsOwnerOnly()
    {
        string path = Path.Combine(Path.GetTempPath(), $"egress-audit-{Guid.NewGuid():N}.jsonl");
        try
        {
            using var log = new LogCapture();
            await using (var audit = AuditLog.Open(path, log.Factory.CreateLogger("audit"), TimeProvider.System))
            {
                audit.Write(Sample());
            }

            await using (var audit = AuditLog.Open(path, log.Factory.CreateLogger("audit"), TimeProvider.System))
            {
                audit.Write(Sample() with { Side = "parent" });
            }

            string[] lines = await File.ReadAllLinesAsync(path);
            Assert.Multiple(() =>
            {
                Assert.That(lines, Has.Length.EqualTo(2));
                Assert.That(JsonDocument.Parse(lines[1]).RootElement.GetProperty("side").GetString(), Is.EqualTo("parent"));
                Assert.That(OperatingSystem.IsWindows() ? UnixFileMode.UserRead | UnixFileMode.UserWrite : File.GetUnixFileMode(path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public async Task AConnectionNeverWaitsForTheAuditARecordBeyondTheQueueIsCountedAndReported()
    {
        using var log = new LogCapture();
        var output = new StalledStream();
        var audit = new AuditLog(output, "stalled", log.Factory.CreateLogger("audit"), TimeProvider.System);
        for (int i = 0; i < AuditLog.Capacity + 10; i++)
        {
            audit.Write(Sample());
        }

        Assert.Multiple(() =>
        {
            // the writer took one line off the queue and waits in it; the rest fill the queue
            Assert.That(audit.Dropped, Is.InRange(9, 10));
            Assert.That(log.EventIds, Does.Contain(601));
        });
        output.Release();
        await audit.DisposeAsync();
        Assert.That(output.Lines, Is.EqualTo(AuditLog.Capacity + 10 - audit.Dropped));
    }

    [Test]
    public async Task AFailedWriteIsReportedOnceAndTheRecordsAfterItAreCounted()
    {
        using var log = new LogCapture();
        var audit = new AuditLog(new FailingStream(), "/full/disk", log.Factory.CreateLogger("audit"), TimeProvider.System);
        audit.Write(Sample());
        await log.WaitForEventAsync(602);
        audit.Write(Sample());
        await audit.DisposeAsync();
        Assert.Multiple(() =>
        {
            Assert.That(log.EventIds.Count(id => id == 602), Is.EqualTo(1));
            Assert.That(audit.Dropped, Is.EqualTo(2));
            Assert.That(log.Lines.Single(l => l.Contains("audit: writing", StringComparison.Ordinal)), Does.Contain("No space left on device"));
        });
    }

    private sealed class StalledStream : MemoryStream
    {
        private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Lines { get; private set; }

        public void Release() => _release.TrySetResult();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await _release.Task;
            Lines++;
        }
    }

    private sealed class FailingStream : MemoryStream
    {
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
            ValueTask.FromException(new IOException("No space left on device"));
    }
}
