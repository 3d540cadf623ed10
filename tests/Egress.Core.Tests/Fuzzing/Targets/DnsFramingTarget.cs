using System.Buffers;
using System.IO.Pipelines;
using Egress.Dns.Wire;
using static Egress.Fuzzing.FuzzInvariantException;

namespace Egress.Fuzzing;

/// <summary>
/// A DNS-over-TCP byte stream (a client connection, a tunnel DNS stream, an upstream's answers) read frame by frame.
/// The contract: no exception; the frames read are exactly the length-prefixed messages of the stream, each
/// re-framing to the bytes it came from; the stream ends on the first empty or over-long frame, and at its end with
/// Closed at a frame boundary or Truncated inside a frame; after the end, a further read throws
/// InvalidOperationException. Checked twice: a slow peer (a few bytes per read, the default 65,535-byte limit) and a
/// fragmented buffer (small segments, a 512-byte limit).
/// </summary>
internal static class DnsFramingTarget
{
    public static FuzzVerdict Run(byte[] input)
    {
        (List<byte[]> frames, DnsStreamRead end) = Model(input, DnsTcpFraming.MaxMessageLength);
        Check(PipeReader.Create(new TrickleStream(input, 1 + (input.Length % 7)), new StreamPipeReaderOptions(bufferSize: 64, minimumReadSize: 16)), DnsTcpFraming.MaxMessageLength, frames, end);

        (List<byte[]> smallFrames, DnsStreamRead smallEnd) = Model(input, 512);
        Check(PipeReader.Create(FuzzInput.Segmented(input, 3)), 512, smallFrames, smallEnd);
        return frames.Count > 0 ? FuzzVerdict.Accepted : FuzzVerdict.Rejected;
    }

    /// <summary>What the stream holds, from the one-call framer over the whole input, checked against the prefix.</summary>
    private static (List<byte[]> Frames, DnsStreamRead End) Model(byte[] input, int maxMessageLength)
    {
        var frames = new List<byte[]>();
        var buffer = new ReadOnlySequence<byte>(input);
        int offset = 0;
        while (true)
        {
            long before = buffer.Length;
            DnsFrameResult result = DnsTcpFraming.TryReadMessage(ref buffer, maxMessageLength, out ReadOnlySequence<byte> message);
            Require(Enum.IsDefined(result), $"undefined frame result {result}");
            if (result != DnsFrameResult.Complete)
            {
                Require(buffer.Length == before && message.IsEmpty, "a frame error consumed bytes");
                Require(result != DnsFrameResult.TooLarge || (input.Length - offset >= 2 && ((input[offset] << 8) | input[offset + 1]) > maxMessageLength), "TooLarge for a frame within the limit");
                return (frames, result switch
                {
                    DnsFrameResult.Empty => DnsStreamRead.EmptyFrame,
                    DnsFrameResult.TooLarge => DnsStreamRead.TooLarge,
                    _ => buffer.IsEmpty ? DnsStreamRead.Closed : DnsStreamRead.Truncated,
                });
            }

            byte[] bytes = message.ToArray();
            Require(bytes.Length is > 0 and <= DnsTcpFraming.MaxMessageLength && bytes.Length <= maxMessageLength, "frame length out of range");
            byte[] framed = new byte[DnsTcpFraming.PrefixLength + bytes.Length];
            Require(DnsTcpFraming.WriteMessage(bytes, framed) == framed.Length && input.AsSpan(offset, framed.Length).SequenceEqual(framed), "a frame does not re-frame to the bytes it came from");
            offset += framed.Length;
            Require(buffer.Length == input.Length - offset, "the framer consumed more or less than the frame");
            frames.Add(bytes);
        }
    }

    private static void Check(PipeReader input, int maxMessageLength, List<byte[]> frames, DnsStreamRead end)
    {
        var reader = new DnsFrameReader(input, maxMessageLength);
        foreach (byte[] frame in frames)
        {
            DnsStreamRead read = FuzzInput.Wait(reader.ReadAsync(CancellationToken.None));
            Require(read == DnsStreamRead.Message && reader.Message.ToArray().AsSpan().SequenceEqual(frame), $"the stream reader gave {read} where a frame of {frame.Length} bytes is");
        }

        DnsStreamRead last = FuzzInput.Wait(reader.ReadAsync(CancellationToken.None));
        Require(last == end, $"the stream reader ended with {last}, expected {end}");
        try
        {
            _ = FuzzInput.Wait(reader.ReadAsync(CancellationToken.None));
            Require(false, "a read after the end did not throw");
        }
        catch (InvalidOperationException)
        {
        }

        input.Complete();
    }
}
