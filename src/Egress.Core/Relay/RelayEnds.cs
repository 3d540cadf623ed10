namespace Egress.Relay;

/// <summary>
/// The part of a connection's closing log line that says how a version 2 tunnel stream's directions ended:
/// <c> (END sent FIN, received RST)</c> for a framed relay, empty for a raw (version 1) relay. A value, formatted only
/// when the line is written (a host logging at Warning formats nothing per connection).
/// </summary>
internal readonly struct RelayEnds(FramedStreamEnd? framed) : ISpanFormattable
{
    /// <summary>The text for <paramref name="relay"/>'s ends.</summary>
    public static RelayEnds LogText(RelayResult relay) => new(relay.Framed);

    /// <inheritdoc/>
    public override string ToString() => framed is { } ends ? $" (END {ends})" : string.Empty;

    /// <inheritdoc/>
    public string ToString(string? format, IFormatProvider? formatProvider) => ToString();

    /// <summary>Writes the same text straight into the log line being formatted, with no string of its own.</summary>
    /// <inheritdoc/>
    public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format, IFormatProvider? provider)
    {
        if (framed is not { } ends)
        {
            charsWritten = 0;
            return true;
        }

        return destination.TryWrite(
            System.Globalization.CultureInfo.InvariantCulture,
            $" (END sent {FramedStreamEnd.Name(ends.Sent)}, received {FramedStreamEnd.Name(ends.Received)})",
            out charsWritten);
    }
}
