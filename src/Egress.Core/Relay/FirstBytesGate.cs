namespace Egress.Relay;

/// <summary>
/// Reads a relay's first bytes from side A before any of them is sent to B, and decides whether the A-to-B direction
/// may start (e.g. <see cref="Tls.ServerNameGate"/>). Only that direction waits; B to A flows from the start, so a
/// server that speaks first is never held up.
/// </summary>
internal interface IFirstBytesGate
{
    /// <summary>Receives from side A through <paramref name="receive"/> until it can decide.</summary>
    /// <param name="receive">Receives into the buffer and returns how many bytes it got, 0 at end of stream (a socket's
    /// receive, or a framed tunnel's payload); at end of stream it returns 0 again if called again. It may throw
    /// <see cref="System.Net.Sockets.SocketException"/>, <see cref="IOException"/> or <see cref="OperationCanceledException"/>,
    /// which the relay reports as a read error on A.</param>
    /// <param name="cancellationToken">The relay's cancellation.</param>
    /// <returns>Allowed with every byte received (the relay sends them to B first), or refused (the relay resets both
    /// sides without sending any of them).</returns>
    ValueTask<FirstBytes> InspectAsync(Func<Memory<byte>, CancellationToken, ValueTask<int>> receive, CancellationToken cancellationToken);
}

/// <summary>An <see cref="IFirstBytesGate"/>'s answer.</summary>
/// <param name="Allowed">Whether the bytes may be relayed.</param>
/// <param name="Received">Every byte received from A while deciding, in order.</param>
internal readonly record struct FirstBytes(bool Allowed, ReadOnlyMemory<byte> Received);
