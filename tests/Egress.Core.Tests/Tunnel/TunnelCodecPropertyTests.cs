using System.Buffers;
using System.Net;
using System.Text;
using Egress.Tunnel;
using FsCheck;
using FsCheck.Fluent;

namespace Egress.Tests.Tunnel;

public sealed class TunnelCodecPropertyTests
{
    private const string HintAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._";

    private static readonly Gen<byte> s_byte = Gen.Choose(0, 255).Select(i => (byte)i);

    private static readonly Gen<string?> s_hint =
        Gen.Frequency(
            (1, Gen.Constant<string?>(null)),
            (3, Gen.Choose(1, 40).SelectMany(n => Gen.ArrayOf(Gen.Elements(HintAlphabet.ToCharArray()), n)).Select(c => (string?)new string(c))),
            (1, Gen.Choose(200, 253).SelectMany(n => Gen.ArrayOf(Gen.Elements(HintAlphabet.ToCharArray()), n)).Select(c => (string?)new string(c))));

    private static readonly Gen<TunnelRequest> s_request =
        Gen.Frequency(
            (1, Gen.Constant(TunnelRequest.ForDns())),
            (6, from address in Gen.OneOf(Gen.ArrayOf(s_byte, 4), Gen.ArrayOf(s_byte, 16))
                from port in Gen.Choose(1, 65535)
                from hint in s_hint
                select TunnelRequest.ForTcp(new IPEndPoint(new IPAddress(address), port), hint)));

    private static readonly Gen<TunnelResponse> s_response =
        from status in Gen.Elements(Enum.GetValues<TunnelStatus>())
        from detail in Gen.OneOf(
            Gen.Constant<string?>(null),
            Gen.Choose(1, 300).SelectMany(n => Gen.ArrayOf(Gen.Elements("a", "b", " ", ":", "\u00e9", "\u4e2d", "\U0001F600"), n)).Select(parts => (string?)string.Concat(parts)))
        select new TunnelResponse(status, detail);

    private static readonly Gen<int[]> s_cuts = Gen.ArrayOf(Gen.Choose(0, 320));

    private static readonly Gen<(int Position, byte Value, int Resize)> s_mutation =
        from position in Gen.Choose(0, 400)
        from value in s_byte
        from resize in Gen.Choose(-4, 4)
        select (position, value, resize);

    private static readonly Gen<byte[]> s_relay = Gen.Choose(0, 8).SelectMany(n => Gen.ArrayOf(s_byte, n));

    [FsCheck.NUnit.Property(MaxTest = 300)]
    public Property RequestRoundTripsAcrossRandomSegmentSplits() =>
        Prop.ForAll(s_request.ToArbitrary(), s_cuts.ToArbitrary(), s_relay.ToArbitrary(), (request, cuts, relay) =>
        {
            byte[] header = TunnelCodecRequestTests.Encode(request);
            var buffer = Sequences.Split(Sequences.Concat(header, relay), cuts);
            var truncated = Sequences.Split(header[..^1], cuts);

            return TunnelCodec.TryReadRequest(ref buffer, out TunnelRequest decoded) == TunnelReadResult.Complete
                && decoded == request
                && buffer.ToArray().AsSpan().SequenceEqual(relay)
                && TunnelCodec.TryReadRequest(ref truncated, out _) == TunnelReadResult.Incomplete
                && truncated.Length == header.Length - 1;
        });

    [FsCheck.NUnit.Property(MaxTest = 300)]
    public Property ResponseRoundTripsAcrossRandomSegmentSplits() =>
        Prop.ForAll(s_response.ToArbitrary(), s_cuts.ToArbitrary(), s_relay.ToArbitrary(), (response, cuts, relay) =>
        {
            byte[] header = TunnelCodecResponseTests.Encode(response);
            var buffer = Sequences.Split(Sequences.Concat(header, relay), cuts);
            string expectedDetail = TruncateToUtf8Bytes(response.Detail ?? "", 255);

            return TunnelCodec.TryReadResponse(ref buffer, out TunnelResponse decoded) == TunnelReadResult.Complete
                && decoded.Status == response.Status
                && (decoded.Detail ?? "") == expectedDetail
                && buffer.ToArray().AsSpan().SequenceEqual(relay);
        });

    /// <summary>
    /// Mutating one byte of a valid request (and cutting or extending it) never throws, and whatever still decodes
    /// as Complete re-encodes to exactly the bytes consumed: the decoder accepts only canonical encodings.
    /// </summary>
    [FsCheck.NUnit.Property(MaxTest = 1000)]
    public Property MutatedRequestNeverThrowsAndCompleteIsCanonical() =>
        Prop.ForAll(s_request.ToArbitrary(), s_mutation.ToArbitrary(), (request, mutation) =>
        {
            var (position, value, resize) = mutation;
            byte[] bytes = TunnelCodecRequestTests.Encode(request);
            bytes[position % bytes.Length] = value;
            bytes = resize < 0 ? bytes[..Math.Max(0, bytes.Length + resize)] : Sequences.Concat(bytes, new byte[resize]);
            var buffer = Sequences.OneBytePerSegment(bytes);

            TunnelReadResult result = TunnelCodec.TryReadRequest(ref buffer, out TunnelRequest decoded);
            if (result != TunnelReadResult.Complete)
            {
                return buffer.Length == bytes.Length && decoded == default;
            }

            byte[] consumed = bytes[..(bytes.Length - (int)buffer.Length)];
            return TunnelCodecRequestTests.Encode(decoded).AsSpan().SequenceEqual(consumed);
        });

    [FsCheck.NUnit.Property(MaxTest = 500)]
    public Property ArbitraryBytesNeverThrow() =>
        Prop.ForAll(Gen.ArrayOf(s_byte).ToArbitrary(), bytes =>
        {
            var request = new ReadOnlySequence<byte>(bytes);
            var response = new ReadOnlySequence<byte>(bytes);
            TunnelReadResult requestResult = TunnelCodec.TryReadRequest(ref request, out _);
            TunnelReadResult responseResult = TunnelCodec.TryReadResponse(ref response, out _);
            return Enum.IsDefined(requestResult) && Enum.IsDefined(responseResult);
        });

    private static string TruncateToUtf8Bytes(string text, int maxBytes)
    {
        int bytes = 0;
        int chars = 0;
        foreach (Rune rune in text.EnumerateRunes())
        {
            if (bytes + rune.Utf8SequenceLength > maxBytes)
            {
                break;
            }

            bytes += rune.Utf8SequenceLength;
            chars += rune.Utf16SequenceLength;
        }

        return text[..chars];
    }
}
