using System.Globalization;
using Egress.Tunnel;

namespace Egress.Relay;

/// <summary>
/// A connection id's part of a log line, <see cref="TunnelConnectionId.LogSuffix"/> (<c>, conn 0123456789abcdef</c>;
/// empty for id 0). A value, formatted only when the line is written (a host logging at Warning formats nothing per
/// connection), and then straight into the line (<see cref="ISpanFormattable"/>: no string of its own).
/// </summary>
internal readonly struct ConnectionIdText(ulong id) : ISpanFormattable
{
    private const string Prefix = ", conn ";

    /// <inheritdoc/>
    public override string ToString() => TunnelConnectionId.LogSuffix(id);

    /// <inheritdoc/>
    public string ToString(string? format, IFormatProvider? formatProvider) => ToString();

    /// <inheritdoc/>
    public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format, IFormatProvider? provider)
    {
        charsWritten = 0;
        if (id == 0)
        {
            return true;
        }

        if (destination.Length < Prefix.Length + 16 || !id.TryFormat(destination[Prefix.Length..], out int digits, "x16", CultureInfo.InvariantCulture))
        {
            return false;
        }

        Prefix.CopyTo(destination);
        charsWritten = Prefix.Length + digits;
        return true;
    }
}
