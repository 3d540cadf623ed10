using Egress.Diagnostics;

namespace Egress.Relay;

/// <summary>
/// How a version 2 tunnel stream's directions ended, in a connection's closing log line: <c>{Ends:line}</c> writes
/// <c> (END sent FIN, received RST)</c> for a framed relay and nothing for a raw (version 1) relay, and the structured
/// value is <c>sent FIN, received RST</c> (empty for a raw relay; <see cref="LogFragment"/>). A value, formatted only
/// when the line is written (a host logging at Warning formats nothing per connection).
/// </summary>
internal readonly struct RelayEnds(FramedStreamEnd? framed) : ISpanFormattable
{
    /// <summary>The text for <paramref name="relay"/>'s ends.</summary>
    public static RelayEnds LogText(RelayResult relay) => new(relay.Framed);

    /// <summary>The ends alone (<c>sent FIN, received RST</c>), or empty for a raw relay.</summary>
    /// <inheritdoc/>
    public override string ToString() => framed?.ToString() ?? string.Empty;

    /// <inheritdoc/>
    public string ToString(string? format, IFormatProvider? formatProvider) =>
        LogFragment.IsLine(format) && framed is { } ends ? $" (END {ends})" : ToString();

    /// <summary>Writes the same text straight into the log line being formatted, with no string of its own.</summary>
    /// <inheritdoc/>
    public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format, IFormatProvider? provider)
    {
        if (framed is not { } ends)
        {
            charsWritten = 0;
            return true;
        }

        string sent = FramedStreamEnd.Name(ends.Sent), received = FramedStreamEnd.Name(ends.Received);
        return LogFragment.IsLine(format)
            ? destination.TryWrite(System.Globalization.CultureInfo.InvariantCulture, $" (END sent {sent}, received {received})", out charsWritten)
            : destination.TryWrite(System.Globalization.CultureInfo.InvariantCulture, $"sent {sent}, received {received}", out charsWritten);
    }
}
