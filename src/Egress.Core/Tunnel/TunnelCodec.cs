using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;
using System.Text.Unicode;

namespace Egress.Tunnel;

/// <summary>
/// Reads and writes the headers of tunnel protocol v1 and v2 (see docs/tunnel-protocol.md). The enclave writes
/// requests and reads responses; the parent reads requests and writes responses. Readers return a
/// <see cref="TunnelReadResult"/> instead of throwing on malformed input. The v2 payload frames are
/// <see cref="TunnelFrames"/>.
/// </summary>
internal static class TunnelCodec
{
    /// <summary>Protocol version 1: raw payload after Ok. Also the version of answers to requests that could not be read.</summary>
    public const byte Version = 1;

    /// <summary>Protocol version 2: TCP payload in DATA frames, each direction closed by one END frame carrying its cause.</summary>
    public const byte Version2 = 2;

    /// <summary>Bytes of the connection id that leads a v2 TCP body (u64, big-endian).</summary>
    public const int ConnectionIdLength = 8;

    /// <summary>The largest request body, in bytes; a larger declared length is rejected before the body is read.</summary>
    public const int MaxRequestBodyLength = 300;

    /// <summary>The largest encoded request, in bytes (4-byte prefix plus the largest body).</summary>
    public const int MaxRequestLength = RequestPrefixLength + MaxRequestBodyLength;

    /// <summary>The largest encoded response, in bytes (3-byte prefix plus a 255-byte detail).</summary>
    public const int MaxResponseLength = ResponsePrefixLength + MaxDetailLength;

    private const int RequestPrefixLength = 4;
    private const int ResponsePrefixLength = 3;
    private const int MaxDetailLength = byte.MaxValue;
    private const byte IPv4Family = 4;
    private const byte IPv6Family = 6;

    /// <summary>Encodes <paramref name="request"/> into <paramref name="destination"/>.</summary>
    /// <returns>The number of bytes written.</returns>
    /// <exception cref="ArgumentException">
    /// The request is <see langword="default"/> or <paramref name="destination"/> is too small
    /// (<see cref="MaxRequestLength"/> bytes always suffice).
    /// </exception>
    public static int WriteRequest(in TunnelRequest request, Span<byte> destination)
    {
        int bodyLength = GetRequestBodyLength(request);
        int length = RequestPrefixLength + bodyLength;
        if (destination.Length < length)
        {
            throw new ArgumentException($"The request needs {length} bytes.", nameof(destination));
        }

        destination[0] = request.Version;
        destination[1] = (byte)request.Kind;
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], (ushort)bodyLength);
        if (request.Kind == TunnelRequestKind.TcpConnect)
        {
            Span<byte> body = destination.Slice(RequestPrefixLength, bodyLength);
            if (request.Version == Version2)
            {
                BinaryPrimitives.WriteUInt64BigEndian(body, request.ConnectionId);
                body = body[ConnectionIdLength..];
            }

            body[0] = request.AddressFamilyByte;
            int offset = 1 + request.WriteAddress(body[1..]);
            BinaryPrimitives.WriteUInt16BigEndian(body[offset..], request.Port);
            offset += 2;
            string? hint = request.HostHint;
            body[offset++] = (byte)(hint?.Length ?? 0);
            if (hint is not null)
            {
                Encoding.ASCII.GetBytes(hint, body[offset..]);
            }
        }

        return length;
    }

    /// <summary>Encodes <paramref name="request"/> into <paramref name="writer"/>.</summary>
    /// <exception cref="ArgumentException">The request is <see langword="default"/>.</exception>
    public static void WriteRequest(IBufferWriter<byte> writer, in TunnelRequest request)
    {
        ArgumentNullException.ThrowIfNull(writer);
        int length = RequestPrefixLength + GetRequestBodyLength(request);
        writer.Advance(WriteRequest(request, writer.GetSpan(length)));
    }

    /// <summary>Reads a request header from the start of <paramref name="buffer"/>.</summary>
    /// <param name="buffer">
    /// The received bytes. On <see cref="TunnelReadResult.Complete"/> it is advanced past the header, leaving any
    /// following bytes to the caller; otherwise it is left untouched.
    /// </param>
    /// <param name="request">The request, when the result is <see cref="TunnelReadResult.Complete"/>.</param>
    /// <returns>
    /// <see cref="TunnelReadResult.Complete"/>, <see cref="TunnelReadResult.Incomplete"/>, or the first error found.
    /// Errors in the prefix (version, kind, length) are reported as soon as their bytes arrive.
    /// </returns>
    public static TunnelReadResult TryReadRequest(ref ReadOnlySequence<byte> buffer, out TunnelRequest request)
    {
        request = default;
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryRead(out byte version))
        {
            return TunnelReadResult.Incomplete;
        }

        if (version is not Version and not Version2)
        {
            return TunnelReadResult.UnsupportedVersion;
        }

        if (!reader.TryRead(out byte kind))
        {
            return TunnelReadResult.Incomplete;
        }

        // Version 2 defines TCP connect only: DNS streams and denial reports have their own records and stay version 1.
        if (kind is not ((byte)TunnelRequestKind.TcpConnect) and not ((byte)TunnelRequestKind.Dns) and not ((byte)TunnelRequestKind.DenialReport)
            || (version == Version2 && kind != (byte)TunnelRequestKind.TcpConnect))
        {
            return TunnelReadResult.UnsupportedKind;
        }

        if (!reader.TryReadBigEndian(out short rawLength))
        {
            return TunnelReadResult.Incomplete;
        }

        int bodyLength = (ushort)rawLength;
        if (bodyLength > MaxRequestBodyLength)
        {
            return TunnelReadResult.Oversize;
        }

        if ((TunnelRequestKind)kind is TunnelRequestKind.Dns or TunnelRequestKind.DenialReport)
        {
            if (bodyLength != 0)
            {
                return TunnelReadResult.LengthMismatch;
            }

            request = (TunnelRequestKind)kind == TunnelRequestKind.Dns ? TunnelRequest.ForDns() : TunnelRequest.ForDenialReport();
            buffer = buffer.Slice(reader.Position);
            return TunnelReadResult.Complete;
        }

        if (reader.Remaining < bodyLength)
        {
            return TunnelReadResult.Incomplete;
        }

        Span<byte> scratch = stackalloc byte[MaxRequestBodyLength];
        ReadOnlySpan<byte> body = Peek(reader.UnreadSequence, bodyLength, scratch);
        reader.Advance(bodyLength);
        TunnelReadResult result = ParseTcpBody(body, version, out request);
        if (result == TunnelReadResult.Complete)
        {
            buffer = buffer.Slice(reader.Position);
        }

        return result;
    }

    /// <summary>Encodes <paramref name="response"/> into <paramref name="destination"/>.</summary>
    /// <returns>The number of bytes written.</returns>
    /// <exception cref="ArgumentException">
    /// The status is not a defined <see cref="TunnelStatus"/>, or <paramref name="destination"/> is too small
    /// (<see cref="MaxResponseLength"/> bytes always suffice).
    /// </exception>
    public static int WriteResponse(in TunnelResponse response, Span<byte> destination)
    {
        if (!Enum.IsDefined(response.Status))
        {
            throw new ArgumentException($"Unknown status {(byte)response.Status}.", nameof(response));
        }

        if (response.Version is not Version and not Version2)
        {
            throw new ArgumentException($"Unknown version {response.Version}.", nameof(response));
        }

        Span<byte> detail = stackalloc byte[MaxDetailLength];
        int detailLength = EncodeDetail(response.Detail, detail);
        int length = ResponsePrefixLength + detailLength;
        if (destination.Length < length)
        {
            throw new ArgumentException($"The response needs {length} bytes.", nameof(destination));
        }

        destination[0] = response.Version;
        destination[1] = (byte)response.Status;
        destination[2] = (byte)detailLength;
        detail[..detailLength].CopyTo(destination[ResponsePrefixLength..]);
        return length;
    }

    /// <summary>Encodes <paramref name="response"/> into <paramref name="writer"/>.</summary>
    /// <exception cref="ArgumentException">The status is not a defined <see cref="TunnelStatus"/>.</exception>
    public static void WriteResponse(IBufferWriter<byte> writer, in TunnelResponse response)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.Advance(WriteResponse(response, writer.GetSpan(MaxResponseLength)));
    }

    /// <summary>Reads a response header from the start of <paramref name="buffer"/>.</summary>
    /// <param name="buffer">
    /// The received bytes. On <see cref="TunnelReadResult.Complete"/> it is advanced past the header, leaving any
    /// following bytes to the caller; otherwise it is left untouched.
    /// </param>
    /// <param name="response">The response, when the result is <see cref="TunnelReadResult.Complete"/>.</param>
    /// <returns>
    /// <see cref="TunnelReadResult.Complete"/>, <see cref="TunnelReadResult.Incomplete"/>,
    /// <see cref="TunnelReadResult.UnsupportedVersion"/> or <see cref="TunnelReadResult.UnknownStatus"/>. The
    /// response's <see cref="TunnelResponse.Version"/> is 1 or 2: whether it fits the request is the caller's check.
    /// </returns>
    public static TunnelReadResult TryReadResponse(ref ReadOnlySequence<byte> buffer, out TunnelResponse response)
    {
        response = default;
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryRead(out byte version))
        {
            return TunnelReadResult.Incomplete;
        }

        if (version is not Version and not Version2)
        {
            return TunnelReadResult.UnsupportedVersion;
        }

        if (!reader.TryRead(out byte status))
        {
            return TunnelReadResult.Incomplete;
        }

        if (!Enum.IsDefined((TunnelStatus)status))
        {
            return TunnelReadResult.UnknownStatus;
        }

        if (!reader.TryRead(out byte detailLength) || reader.Remaining < detailLength)
        {
            return TunnelReadResult.Incomplete;
        }

        string? detail = null;
        if (detailLength > 0)
        {
            Span<byte> scratch = stackalloc byte[MaxDetailLength];
            detail = Encoding.UTF8.GetString(Peek(reader.UnreadSequence, detailLength, scratch));
            reader.Advance(detailLength);
        }

        response = new TunnelResponse((TunnelStatus)status, detail) { Version = version };
        buffer = buffer.Slice(reader.Position);
        return TunnelReadResult.Complete;
    }

    /// <summary>
    /// Reads a request header from <paramref name="reader"/>. On <see cref="TunnelReadResult.Complete"/> only the
    /// header is consumed: bytes that followed it stay in the reader. On an error nothing is consumed.
    /// </summary>
    /// <returns>
    /// The result and, when it is <see cref="TunnelReadResult.Complete"/>, the request;
    /// <see cref="TunnelReadResult.TruncatedStream"/> when the stream ends first.
    /// </returns>
    /// <exception cref="OperationCanceledException">
    /// <paramref name="cancellationToken"/> was canceled or a pending read was canceled.
    /// </exception>
    public static async ValueTask<(TunnelReadResult Result, TunnelRequest Request)> ReadRequestAsync(PipeReader reader, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(reader);
        while (true)
        {
            ReadResult read = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = read.Buffer;
            TunnelReadResult result = TryReadRequest(ref buffer, out TunnelRequest request);
            if (Finish(reader, read, result, buffer.Start) is { } final)
            {
                return (final, request);
            }
        }
    }

    /// <summary>
    /// Reads a response header from <paramref name="reader"/>. On <see cref="TunnelReadResult.Complete"/> only the
    /// header is consumed: bytes that followed it stay in the reader. On an error nothing is consumed.
    /// </summary>
    /// <returns>
    /// The result and, when it is <see cref="TunnelReadResult.Complete"/>, the response;
    /// <see cref="TunnelReadResult.TruncatedStream"/> when the stream ends first.
    /// </returns>
    /// <exception cref="OperationCanceledException">
    /// <paramref name="cancellationToken"/> was canceled or a pending read was canceled.
    /// </exception>
    public static async ValueTask<(TunnelReadResult Result, TunnelResponse Response)> ReadResponseAsync(PipeReader reader, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(reader);
        while (true)
        {
            ReadResult read = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = read.Buffer;
            TunnelReadResult result = TryReadResponse(ref buffer, out TunnelResponse response);
            if (Finish(reader, read, result, buffer.Start) is { } final)
            {
                return (final, response);
            }
        }
    }

    /// <summary>The status a parent should answer to a request that failed to read with <paramref name="result"/>.</summary>
    /// <returns>
    /// <see cref="TunnelStatus.UnsupportedVersion"/>, <see cref="TunnelStatus.UnsupportedKind"/>, or
    /// <see cref="TunnelStatus.BadRequest"/> for every other error.
    /// </returns>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="result"/> is <see cref="TunnelReadResult.Complete"/> or <see cref="TunnelReadResult.Incomplete"/>.
    /// </exception>
    public static TunnelStatus StatusFor(TunnelReadResult result) => result switch
    {
        TunnelReadResult.Complete or TunnelReadResult.Incomplete =>
            throw new ArgumentOutOfRangeException(nameof(result), result, "Not an error."),
        TunnelReadResult.UnsupportedVersion => TunnelStatus.UnsupportedVersion,
        TunnelReadResult.UnsupportedKind => TunnelStatus.UnsupportedKind,
        _ => TunnelStatus.BadRequest,
    };

    private static int GetRequestBodyLength(in TunnelRequest request) => request.Kind switch
    {
        TunnelRequestKind.Dns or TunnelRequestKind.DenialReport => 0,
        TunnelRequestKind.TcpConnect =>
            (request.Version == Version2 ? ConnectionIdLength : 0)
            + 1 + (request.AddressFamilyByte == IPv4Family ? 4 : 16) + 2 + 1 + (request.HostHint?.Length ?? 0),
        _ => throw new ArgumentException("The request was not created by TunnelRequest.ForTcp, ForDns or ForDenialReport.", nameof(request)),
    };

    private static TunnelReadResult ParseTcpBody(ReadOnlySpan<byte> body, byte version, out TunnelRequest request)
    {
        request = default;
        ulong connectionId = 0;
        if (version == Version2)
        {
            if (body.Length < ConnectionIdLength)
            {
                return TunnelReadResult.LengthMismatch;
            }

            connectionId = BinaryPrimitives.ReadUInt64BigEndian(body);
            body = body[ConnectionIdLength..];
        }

        if (body.IsEmpty)
        {
            return TunnelReadResult.LengthMismatch;
        }

        int addressLength = body[0] switch
        {
            IPv4Family => 4,
            IPv6Family => 16,
            _ => 0,
        };
        if (addressLength == 0)
        {
            return TunnelReadResult.InvalidAddressFamily;
        }

        int hintOffset = 1 + addressLength + 2 + 1;
        if (body.Length < hintOffset)
        {
            return TunnelReadResult.LengthMismatch;
        }

        ReadOnlySpan<byte> address = body.Slice(1, addressLength);
        ushort port = BinaryPrimitives.ReadUInt16BigEndian(body[(1 + addressLength)..]);
        if (port == 0)
        {
            return TunnelReadResult.InvalidPort;
        }

        int hintLength = body[hintOffset - 1];
        if (hintLength > TunnelHostHint.MaxLength)
        {
            return TunnelReadResult.InvalidHostHint;
        }

        if (body.Length - hintOffset != hintLength)
        {
            return TunnelReadResult.LengthMismatch;
        }

        ReadOnlySpan<byte> hint = body[hintOffset..];
        if (hintLength > 0 && !TunnelHostHint.IsValid(hint))
        {
            return TunnelReadResult.InvalidHostHint;
        }

        request = TunnelRequest.FromWire(address, port, hintLength == 0 ? null : Encoding.ASCII.GetString(hint));
        if (version == Version2)
        {
            request = request.AsVersion2(connectionId);
        }

        return TunnelReadResult.Complete;
    }

    /// <summary>Encodes <paramref name="detail"/> as UTF-8, cut to whole characters fitting <paramref name="destination"/>.</summary>
    private static int EncodeDetail(string? detail, Span<byte> destination)
    {
        if (string.IsNullOrEmpty(detail))
        {
            return 0;
        }

        // On DestinationTooSmall the transcoder stops after the last whole scalar that fits, never mid-character.
        Utf8.FromUtf16(detail, destination, out _, out int written, replaceInvalidSequences: true, isFinalBlock: true);
        return written;
    }

    /// <summary>Returns the first <paramref name="length"/> bytes of <paramref name="bytes"/> (known to be available) as one span.</summary>
    private static ReadOnlySpan<byte> Peek(in ReadOnlySequence<byte> bytes, int length, Span<byte> scratch)
    {
        ReadOnlySpan<byte> first = bytes.FirstSpan;
        if (first.Length >= length)
        {
            return first[..length];
        }

        bytes.Slice(0, length).CopyTo(scratch);
        return scratch[..length];
    }

    /// <summary>
    /// Advances <paramref name="reader"/> after one parse attempt and returns the final result, or
    /// <see langword="null"/> when more data must be read.
    /// </summary>
    private static TunnelReadResult? Finish(PipeReader reader, in ReadResult read, TunnelReadResult result, SequencePosition headerEnd)
    {
        switch (result)
        {
            case TunnelReadResult.Complete:
                reader.AdvanceTo(headerEnd);
                return result;
            case TunnelReadResult.Incomplete:
                reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
                if (read.IsCompleted)
                {
                    return TunnelReadResult.TruncatedStream;
                }

                if (read.IsCanceled)
                {
                    throw new OperationCanceledException("The pending read was canceled.");
                }

                return null;
            default:
                reader.AdvanceTo(read.Buffer.Start);
                return result;
        }
    }
}
