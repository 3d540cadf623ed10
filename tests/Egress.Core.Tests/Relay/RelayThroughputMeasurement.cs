using System.Diagnostics;
using System.IO.Pipelines;
using Egress.Relay;

namespace Egress.Tests.Relay;

/// <summary>Prints in-memory relay throughput (one direction, 64 KiB writes). A measurement, not a check: run explicitly.</summary>
public sealed class RelayThroughputMeasurement
{
    [Test]
    [Explicit("measurement; prints MB/s")]
    public async Task InMemoryThroughput()
    {
        const long total = 2L * 1024 * 1024 * 1024;
        var options = new PipeOptions(pauseWriterThreshold: 1024 * 1024, resumeWriterThreshold: 512 * 1024, minimumSegmentSize: 64 * 1024, useSynchronizationContext: false);
        var a = new PipePeer(options, options);
        var b = new PipePeer(options, options);
        byte[] chunk = DuplexRelayTests.RandomBytes(64 * 1024, seed: 1);

        var stopwatch = Stopwatch.StartNew();
        Task<RelayResult> run = DuplexRelay.RunAsync(a.Side, b.Side, RelayOptions.Default, CancellationToken.None);
        Task drain = Task.Run(async () =>
        {
            while (true)
            {
                ReadResult read = await b.Reader.ReadAsync();
                b.Reader.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted)
                {
                    return;
                }
            }
        });
        for (long sent = 0; sent < total; sent += chunk.Length)
        {
            await a.Writer.WriteAsync(chunk);
        }

        await a.Writer.CompleteAsync();
        await drain;
        await b.Writer.CompleteAsync();
        RelayResult result = await run;
        stopwatch.Stop();

        await TestContext.Out.WriteLineAsync($"in-memory relay: {total / 1e6 / stopwatch.Elapsed.TotalSeconds:F0} MB/s ({result.BytesAToB} bytes)");
        Assert.That(result.BytesAToB, Is.EqualTo(total));
    }
}
