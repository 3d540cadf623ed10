using System.Buffers;
using System.IO.Pipelines;

namespace Egress.Tests.Relay;

internal static class PipeIo
{
    /// <summary>Reads until the writer completes; rethrows the writer's exception.</summary>
    public static async Task<byte[]> ReadToEndAsync(PipeReader reader)
    {
        var received = new ArrayBufferWriter<byte>();
        while (true)
        {
            ReadResult result = await reader.ReadAsync();
            foreach (ReadOnlyMemory<byte> segment in result.Buffer)
            {
                received.Write(segment.Span);
            }

            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return received.WrittenSpan.ToArray();
            }
        }
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes (fails on early end).</summary>
    public static async Task<byte[]> ReadExactlyAsync(PipeReader reader, int count)
    {
        ReadResult result = await reader.ReadAtLeastAsync(count);
        Assert.That(result.Buffer.Length, Is.GreaterThanOrEqualTo(count), "stream ended early");
        byte[] data = result.Buffer.Slice(0, count).ToArray();
        reader.AdvanceTo(result.Buffer.GetPosition(count));
        return data;
    }

    /// <summary>Writes <paramref name="payload"/> in pieces whose sizes cycle through <paramref name="chunks"/>, flushing each.</summary>
    public static async Task WriteChunkedAsync(PipeWriter writer, byte[] payload, IReadOnlyList<int> chunks, bool complete)
    {
        int offset = 0;
        int index = 0;
        while (offset < payload.Length)
        {
            int size = Math.Min(chunks[index++ % chunks.Count], payload.Length - offset);
            await writer.WriteAsync(payload.AsMemory(offset, size));
            offset += size;
        }

        if (complete)
        {
            await writer.CompleteAsync();
        }
    }

    /// <summary>Waits (polling, up to 10 s) until the pipe's reader has been completed without an error.</summary>
    public static async Task WaitForReaderCompletionAsync(PipeWriter writer)
    {
        for (int attempt = 0; attempt < 10_000; attempt++)
        {
            if ((await writer.FlushAsync()).IsCompleted)
            {
                return;
            }

            await Task.Delay(1);
        }

        Assert.Fail("the reader was never completed");
    }
}
