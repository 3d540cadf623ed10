using System.Buffers;
using System.Net.Sockets;
using Egress.Sockets;
using Egress.Tunnel;

namespace Egress.Relay;

/// <summary>
/// The A-to-B direction behind an <see cref="IFirstBytesGate"/> (the TLS server-name check): the gate reads A's
/// first bytes before any of them is sent to B; B to A runs from the start, so a server that speaks first is never
/// held up. A refusal aborts the relay with <see cref="RelayShutdownCause.Refused"/>, nothing forwarded. On a v1 or
/// plain relay both sockets are reset; on a v2 stream the plain socket is reset and the tunnel ends its direction
/// with END(Refused), so the far host learns the cause.
/// </summary>
internal sealed partial class SocketRelaySession
{
    /// <summary>Plain A to plain B behind the gate. Never throws.</summary>
    private async Task<long> GatedForwardAsync(IFirstBytesGate gate, ReadOnlyMemory<byte> readFromA, bool splice, CancellationToken cancellationToken)
    {
        if (await InspectAsync(gate, PlainReceive(readFromA), readFromA.IsEmpty, cancellationToken).ConfigureAwait(false) is not { Allowed: true } first)
        {
            return 0; // aborted: both sockets reset
        }

        _monitor.Touch();
        return await (splice ? SpliceAsync(_a, _b, first.Received, fromA: true) : CopyAsync(_a, _b, first.Received, fromA: true)).ConfigureAwait(false);
    }

    /// <summary>The enclave's side of a v2 stream: the application's bytes (A) behind the gate, then DATA frames to
    /// the tunnel (B). Refused: the encoder still runs, finds A reset, and writes END(Refused). Never throws.</summary>
    private async Task<long> GatedEncodeAsync(IFirstBytesGate gate, ReadOnlyMemory<byte> readFromA, bool splice, CancellationToken cancellationToken)
    {
        FirstBytes? first = await InspectAsync(gate, PlainReceive(readFromA), readFromA.IsEmpty, cancellationToken).ConfigureAwait(false);
        if (first is not { Allowed: true } allowed)
        {
            await EncodeAsync(_a, _b, ReadOnlyMemory<byte>.Empty, fromA: true, splice).ConfigureAwait(false);
            return 0;
        }

        _monitor.Touch();
        return await EncodeAsync(_a, _b, allowed.Received, fromA: true, splice).ConfigureAwait(false);
    }

    /// <summary>
    /// The parent's side of a v2 stream: the payload of the tunnel's DATA frames (A) behind the gate. The gate reads
    /// payload through a <see cref="FramedPayloadReader"/>, which keeps every tunnel byte it took; the decoder then
    /// starts from those bytes, so it sends the payload on (allowed) or reads on to the END frame, discarding
    /// (refused: the destination was reset, and the enclave gets END(Refused)). Never throws.
    /// </summary>
    private async Task<long> GatedDecodeAsync(IFirstBytesGate gate, ReadOnlyMemory<byte> readFromA, bool splice, CancellationToken cancellationToken)
    {
        var reader = new FramedPayloadReader(_a, readFromA);
        try
        {
            FirstBytes? first = await InspectAsync(gate, reader.ReceiveAsync, readFromA.IsEmpty, cancellationToken).ConfigureAwait(false);
            if (first is { Allowed: true })
            {
                _monitor.Touch();
            }

            return await DecodeAsync(_a, _b, reader.Taken, fromA: true, splice).ConfigureAwait(false);
        }
        finally
        {
            reader.Dispose();
        }
    }

    /// <summary>Runs the gate; null when it refused or reading failed, the relay then aborted. With nothing read from A
    /// yet (<paramref name="waitFirst"/>), it first waits for A to be readable, holding no buffer: the gate's (32 KiB)
    /// and the framed reader's (4 KiB) are taken only once bytes are there (a red-team trial: 3,000 connections that
    /// never wrote cost each host about 25 KB apiece under the check, 10 KB without it).</summary>
    private async Task<FirstBytes?> InspectAsync(
        IFirstBytesGate gate, Func<Memory<byte>, CancellationToken, ValueTask<int>> receive, bool waitFirst, CancellationToken cancellationToken)
    {
        FirstBytes first;
        try
        {
            if (waitFirst)
            {
                await SocketReadiness.WaitReadableAsync(_a, cancellationToken).ConfigureAwait(false);
            }

            first = await gate.InspectAsync(receive, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            AbortOnError(ex, receiving: true, fromA: true);
            return null;
        }

        if (!first.Allowed)
        {
            _monitor.Abort(RelayShutdownCause.Refused, null);
            return null;
        }

        return first;
    }

    /// <summary>Receives from A, after the bytes already read from it.</summary>
    private Func<Memory<byte>, CancellationToken, ValueTask<int>> PlainReceive(ReadOnlyMemory<byte> already) =>
        (buffer, token) =>
        {
            if (already.IsEmpty)
            {
                return SocketReadiness.ReceiveAsync(_a, buffer, token);
            }

            int count = Math.Min(buffer.Length, already.Length);
            already[..count].CopyTo(buffer);
            already = already[count..];
            return ValueTask.FromResult(count);
        };

    /// <summary>
    /// Reads the payload of a tunnel's DATA frames for a gate, keeping every tunnel byte it took (headers, payload,
    /// an END frame, a partial frame) for the decoder, which reads them again. End of payload (0) at an END frame, at
    /// the tunnel's end, or at a frame the decoder will reject: the decoder then acts on it as it always does.
    /// </summary>
    private sealed class FramedPayloadReader(Socket tunnel, ReadOnlyMemory<byte> already) : IDisposable
    {
        private byte[] _taken = already.IsEmpty ? [] : Take(already); // rented when the first bytes come
        private int _length = already.Length;
        private int _parsed;
        private long _payloadLeft;
        private bool _ended;

        /// <summary>Gets every tunnel byte taken so far.</summary>
        public ReadOnlyMemory<byte> Taken => _taken.AsMemory(0, _length);

        /// <summary>Copies into <paramref name="buffer"/> the payload of every DATA frame already taken, as much as fits,
        /// and receives from the tunnel only when none is: one call per receive from the tunnel, however small its frames
        /// (a red-team trial sent a ClientHello in 1-byte DATA frames: a call per frame, each parsing again, cost the
        /// parent 0.08-0.33 CPU-s per 164 KB stream).</summary>
        public async ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken)
        {
            int copied = 0;
            while (!_ended)
            {
                if (_payloadLeft > 0 && _parsed < _length)
                {
                    int count = (int)Math.Min(Math.Min(_payloadLeft, _length - _parsed), buffer.Length - copied);
                    _taken.AsMemory(_parsed, count).CopyTo(buffer[copied..]);
                    _parsed += count;
                    _payloadLeft -= count;
                    copied += count;
                    if (copied == buffer.Length)
                    {
                        return copied;
                    }

                    continue;
                }

                if (_payloadLeft == 0)
                {
                    TunnelFrameResult parsed = TunnelFrames.TryReadHeader(_taken.AsSpan(_parsed, _length - _parsed), out TunnelFrameHeader frame);
                    if (parsed == TunnelFrameResult.Complete && frame.Type == TunnelFrameType.Data)
                    {
                        _parsed += frame.Length;
                        _payloadLeft = frame.PayloadLength;
                        continue;
                    }

                    if (parsed != TunnelFrameResult.Incomplete)
                    {
                        _ended = true; // END, or a frame the decoder rejects
                        break;
                    }
                }

                if (copied > 0)
                {
                    return copied; // what was taken is handed over; the tunnel is read on the next call
                }

                if (_length == _taken.Length)
                {
                    byte[] larger = ArrayPool<byte>.Shared.Rent(Math.Max(_taken.Length * 2, 4096));
                    _taken.AsSpan(0, _length).CopyTo(larger);
                    if (_taken.Length > 0)
                    {
                        ArrayPool<byte>.Shared.Return(_taken);
                    }

                    _taken = larger;
                }

                int got = await SocketReadiness.ReceiveAsync(tunnel, _taken.AsMemory(_length), cancellationToken).ConfigureAwait(false);
                if (got == 0)
                {
                    _ended = true;
                    break;
                }

                _length += got;
            }

            return copied; // 0 once ended, or what was taken before the end
        }

        public void Dispose()
        {
            if (_taken.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(_taken);
            }
        }

        private static byte[] Take(ReadOnlyMemory<byte> bytes)
        {
            byte[] taken = ArrayPool<byte>.Shared.Rent(Math.Max(bytes.Length, 4096));
            bytes.Span.CopyTo(taken);
            return taken;
        }
    }
}
