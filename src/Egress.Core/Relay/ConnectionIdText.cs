using Egress.Tunnel;

namespace Egress.Relay;

/// <summary>
/// A connection id's part of a log line, <see cref="TunnelConnectionId.LogSuffix"/> (<c>, conn 0123456789abcdef</c>;
/// empty for id 0). A value, formatted only when the line is written (a host logging at Warning formats nothing per
/// connection).
/// </summary>
internal readonly struct ConnectionIdText(ulong id)
{
    /// <inheritdoc/>
    public override string ToString() => TunnelConnectionId.LogSuffix(id);
}
