using System.Buffers;
using System.IO.Pipelines;

namespace Egress.Dns.Wire;

/// <summary>Why <see cref="DnsFrameReader.ReadAsync"/> returned.</summary>
internal enum DnsStreamRead
{
    /// <summary>A whole message is in <see cref="DnsFrameReader.Message"/>.</summary>
    Message,

    /// <summary>The peer closed the stream (or the read was cancelled through the pipe) at a frame boundary.</summary>
    Closed,

    /// <summary>The peer closed the stream in the middle of a frame (prefix or message): the tail is lost.</summary>
    Truncated,

    /// <summary>The peer sent a zero-length frame, which no DNS message has.</summary>
    EmptyFrame,

    /// <summary>The peer declared a message longer than the reader's limit.</summary>
    TooLarge,
}

/// <summary>
/// Reads length-prefixed DNS messages (RFC 1035 section 4.2.2, RFC 7766 section 8) from a pipe, one at a time,
/// however the bytes are fragmented: the one reader of every DNS stream. Messages already buffered are returned
/// without another pipe read. Anything but <see cref="DnsStreamRead.Message"/> ends the stream: the reader has
/// released its buffer and reads no further. Not thread-safe: one reader per stream.
/// </summary>
/// <param name="input">The stream's input, positioned at a frame boundary.</param>
/// <param name="maxMessageLength">The longest message accepted, in bytes (1 to 65,535).</param>
/// <param name="frameStarted">Called once per frame, as soon as its first bytes are buffered and it is still
/// incomplete (the start of a minimum-progress deadline: a frame must complete within a bounded time of its first
/// byte, however slowly the rest arrives); null for none.</param>
internal sealed class DnsFrameReader(PipeReader input, int maxMessageLength = DnsTcpFraming.MaxMessageLength, Action? frameStarted = null)
{
    private ReadOnlySequence<byte> _buffer;
    private bool _holding;
    private bool _completed;
    private bool _ended;
    private bool _started;

    /// <summary>Gets the message last read: valid until the next <see cref="ReadAsync"/>.</summary>
    public ReadOnlySequence<byte> Message { get; private set; }

    /// <summary>Reads the next message into <see cref="Message"/>.</summary>
    /// <param name="cancellationToken">Stops waiting for bytes.</param>
    /// <returns><see cref="DnsStreamRead.Message"/>, or why the stream ended.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="InvalidOperationException">The stream already ended.</exception>
    /// <remarks>Transport errors (e.g. <see cref="IOException"/> for a reset) propagate from the pipe.</remarks>
    public async ValueTask<DnsStreamRead> ReadAsync(CancellationToken cancellationToken)
    {
        if (_ended)
        {
            throw new InvalidOperationException("The DNS stream already ended.");
        }

        Message = default;
        while (true)
        {
            if (_holding)
            {
                DnsFrameResult frame = DnsTcpFraming.TryReadMessage(ref _buffer, maxMessageLength, out ReadOnlySequence<byte> message);
                switch (frame)
                {
                    case DnsFrameResult.Complete:
                        _started = false;
                        Message = message;
                        return DnsStreamRead.Message;
                    case DnsFrameResult.Empty:
                        return End(DnsStreamRead.EmptyFrame);
                    case DnsFrameResult.TooLarge:
                        return End(DnsStreamRead.TooLarge);
                }

                if (_completed)
                {
                    return End(_buffer.IsEmpty ? DnsStreamRead.Closed : DnsStreamRead.Truncated);
                }

                input.AdvanceTo(_buffer.Start, _buffer.End);
                _holding = false;
                if (!_started && !_buffer.IsEmpty)
                {
                    _started = true;
                    frameStarted?.Invoke();
                }
            }

            ReadResult read = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            _buffer = read.Buffer;
            _holding = true;
            _completed = read.IsCompleted || read.IsCanceled;
        }
    }

    private DnsStreamRead End(DnsStreamRead reason)
    {
        _ended = true;
        if (_holding)
        {
            input.AdvanceTo(_buffer.Start, _buffer.End);
            _holding = false;
        }

        return reason;
    }
}
