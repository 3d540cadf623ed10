using System.IO.Pipelines;

namespace Egress.Tests.Relay;

/// <summary>One side of a relay made of two in-memory pipes: the test plays the remote peer.</summary>
internal sealed class PipePeer
{
    private readonly Pipe _toRelay;
    private readonly Pipe _fromRelay;

    public PipePeer(PipeOptions? toRelay = null, PipeOptions? fromRelay = null)
    {
        _toRelay = new Pipe(toRelay ?? Default);
        _fromRelay = new Pipe(fromRelay ?? Default);
        Side = new DuplexPipe(_toRelay.Reader, _fromRelay.Writer);
    }

    public static PipeOptions Default { get; } = new(useSynchronizationContext: false);

    /// <summary>What the relay sees.</summary>
    public IDuplexPipe Side { get; }

    /// <summary>The peer sends into the relay here.</summary>
    public PipeWriter Writer => _toRelay.Writer;

    /// <summary>The peer receives what the relay delivers here.</summary>
    public PipeReader Reader => _fromRelay.Reader;
}
