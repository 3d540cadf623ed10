using System.Globalization;
using Egress.Diagnostics;

namespace Egress.Relay;

/// <summary>
/// A connection id in a log line: <c>{ConnectionId:line}</c> writes <c>, conn 0123456789abcdef</c> (16 hex digits;
/// nothing for id 0, a version 1 stream), and the structured value is the 16 hex
/// digits alone (empty for id 0), as the audit record's <c>connection_id</c> (<see cref="LogFragment"/>). A value,
/// formatted only when the line is written (a host logging at Warning formats nothing per connection), and then straight
/// into the line (<see cref="ISpanFormattable"/>: no string of its own).
/// </summary>
internal readonly struct ConnectionIdText(ulong id) : ISpanFormattable
{
    private const string Prefix = ", conn ";

    /// <summary>The 16 hex digits, or empty for id 0.</summary>
    /// <inheritdoc/>
    public override string ToString() => id == 0 ? string.Empty : id.ToString("x16", CultureInfo.InvariantCulture);

    /// <inheritdoc/>
    public string ToString(string? format, IFormatProvider? formatProvider) =>
        LogFragment.IsLine(format) && id != 0 ? Prefix + ToString() : ToString();

    /// <inheritdoc/>
    public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format, IFormatProvider? provider)
    {
        charsWritten = 0;
        if (id == 0)
        {
            return true;
        }

        string prefix = LogFragment.IsLine(format) ? Prefix : string.Empty;
        if (destination.Length < prefix.Length + 16 || !id.TryFormat(destination[prefix.Length..], out int digits, "x16", CultureInfo.InvariantCulture))
        {
            return false;
        }

        prefix.CopyTo(destination);
        charsWritten = prefix.Length + digits;
        return true;
    }
}
