using System.Buffers;
using System.IO.Pipelines;
using System.Text.Unicode;
using Egress.Tunnel;
using static Egress.Fuzzing.FuzzInvariantException;

namespace Egress.Fuzzing;

/// <summary>
/// The tunnel header codec (docs/tunnel-protocol.md) on untrusted bytes: the parent reads requests from the enclave,
/// the enclave reads responses from the parent. Both readers get the same input. The contract: a defined result and
/// no exception; the same result however the bytes are segmented and through the pipe readers; a Complete header
/// re-encodes to exactly the bytes consumed (only canonical encodings are accepted) and any shorter prefix of it is
/// Incomplete; an error consumes nothing and maps to a status.
/// </summary>
internal static class TunnelCodecTarget
{
    public static FuzzVerdict Run(byte[] input)
    {
        bool request = CheckRequest(input);
        bool response = CheckResponse(input);
        return request || response ? FuzzVerdict.Accepted : FuzzVerdict.Rejected;
    }

    private static bool CheckRequest(byte[] input)
    {
        var whole = new ReadOnlySequence<byte>(input);
        TunnelReadResult result = TunnelCodec.TryReadRequest(ref whole, out TunnelRequest request);
        Require(Enum.IsDefined(result) && result is not TunnelReadResult.TruncatedStream, $"request: undefined result {result}");

        var split = FuzzInput.Segmented(input, 1 + (input.Length % 5));
        TunnelReadResult splitResult = TunnelCodec.TryReadRequest(ref split, out TunnelRequest splitRequest);
        Require(splitResult == result && splitRequest == request && split.Length == whole.Length, "request: the result depends on segmentation");

        PipeReader pipe = PipeReader.Create(FuzzInput.Segmented(input, 7));
        (TunnelReadResult pipeResult, TunnelRequest pipeRequest) = FuzzInput.Wait(TunnelCodec.ReadRequestAsync(pipe, CancellationToken.None));
        Require(pipeResult == (result == TunnelReadResult.Incomplete ? TunnelReadResult.TruncatedStream : result) && pipeRequest == request, "request: the pipe reader disagrees");

        if (result != TunnelReadResult.Complete)
        {
            Require(whole.Length == input.Length && request == default, "request: an error consumed bytes or returned a request");
            if (result != TunnelReadResult.Incomplete)
            {
                Require(TunnelCodec.StatusFor(result) is not TunnelStatus.Ok, "request: an error maps to Ok");
            }

            return false;
        }

        int consumed = input.Length - (int)whole.Length;
        Require(consumed <= TunnelCodec.MaxRequestLength, "request: header longer than the maximum");
        Span<byte> encoded = stackalloc byte[TunnelCodec.MaxRequestLength];
        int length = TunnelCodec.WriteRequest(request, encoded);
        Require(encoded[..length].SequenceEqual(input.AsSpan(0, consumed)), "request: a non-canonical encoding was accepted");
        Require(request.Kind == TunnelRequestKind.Dns || (request.Port != 0 && (request.HostHint is null || TunnelHostHint.IsValid(request.HostHint))), "request: an invalid request was accepted");

        var prefix = new ReadOnlySequence<byte>(input, 0, consumed - 1);
        Require(TunnelCodec.TryReadRequest(ref prefix, out _) == TunnelReadResult.Incomplete, "request: a prefix of a complete header is not Incomplete");

        ReadResult rest = FuzzInput.Wait(pipe.ReadAsync());
        Require(rest.Buffer.Length == input.Length - consumed, "request: the pipe reader consumed bytes after the header");
        pipe.AdvanceTo(rest.Buffer.End);
        return true;
    }

    private static bool CheckResponse(byte[] input)
    {
        var whole = new ReadOnlySequence<byte>(input);
        TunnelReadResult result = TunnelCodec.TryReadResponse(ref whole, out TunnelResponse response);
        Require(result is TunnelReadResult.Complete or TunnelReadResult.Incomplete or TunnelReadResult.UnsupportedVersion or TunnelReadResult.UnknownStatus, $"response: undocumented result {result}");

        var split = FuzzInput.Segmented(input, 1 + (input.Length % 3));
        TunnelReadResult splitResult = TunnelCodec.TryReadResponse(ref split, out TunnelResponse splitResponse);
        Require(splitResult == result && splitResponse == response && split.Length == whole.Length, "response: the result depends on segmentation");

        PipeReader pipe = PipeReader.Create(FuzzInput.Segmented(input, 5));
        (TunnelReadResult pipeResult, TunnelResponse pipeResponse) = FuzzInput.Wait(TunnelCodec.ReadResponseAsync(pipe, CancellationToken.None));
        Require(pipeResult == (result == TunnelReadResult.Incomplete ? TunnelReadResult.TruncatedStream : result) && pipeResponse == response, "response: the pipe reader disagrees");

        if (result != TunnelReadResult.Complete)
        {
            Require(whole.Length == input.Length && response == default, "response: an error consumed bytes or returned a response");
            return false;
        }

        int consumed = input.Length - (int)whole.Length;
        Require(consumed == 3 + input[2] && Enum.IsDefined(response.Status), "response: wrong length or status");
        Span<byte> encoded = stackalloc byte[TunnelCodec.MaxResponseLength];
        int length = TunnelCodec.WriteResponse(response, encoded);
        ReadOnlySpan<byte> detail = input.AsSpan(3, input[2]);
        if (Utf8.IsValid(detail))
        {
            Require(encoded[..length].SequenceEqual(input.AsSpan(0, consumed)), "response: a valid header does not re-encode to itself");
        }
        else
        {
            // Each invalid byte reads as U+FFFD (3 bytes in UTF-8), so the repaired detail may be cut on re-encoding.
            var again = new ReadOnlySequence<byte>(encoded[..length].ToArray());
            Require(TunnelCodec.TryReadResponse(ref again, out TunnelResponse reread) == TunnelReadResult.Complete && reread.Status == response.Status
                && response.Detail!.StartsWith(reread.Detail ?? "", StringComparison.Ordinal), "response: a repaired detail does not re-encode to a prefix of itself");
        }

        var prefix = new ReadOnlySequence<byte>(input, 0, consumed - 1);
        Require(TunnelCodec.TryReadResponse(ref prefix, out _) == TunnelReadResult.Incomplete, "response: a prefix of a complete header is not Incomplete");
        return true;
    }
}
