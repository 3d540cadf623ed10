using System.Globalization;

namespace Egress.Diagnostics;

/// <summary>
/// How many refusals a once-a-second line's rate limit held back (<see cref="LogRateLimit"/>), in that line:
/// <c>{HeldBack:line}</c> writes <c> (12 more refused since the last such line)</c>, or nothing for 0 (a first line
/// read "(0 more refused since the last such line)", a field trial found); the structured value is the count
/// (<see cref="LogFragment"/>).
/// </summary>
/// <param name="count">The refusals held back since the last line written.</param>
/// <param name="verb">What was done to them, as the line says it: "refused", "rejected".</param>
internal readonly struct MoreSinceLastLine(long count, string verb) : ISpanFormattable
{
    /// <summary>The count.</summary>
    /// <inheritdoc/>
    public override string ToString() => count.ToString(CultureInfo.InvariantCulture);

    /// <inheritdoc/>
    public string ToString(string? format, IFormatProvider? formatProvider) =>
        !LogFragment.IsLine(format) ? ToString() : count == 0 ? string.Empty : string.Create(CultureInfo.InvariantCulture, $"{this:line}");

    /// <inheritdoc/>
    public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format, IFormatProvider? provider)
    {
        if (!LogFragment.IsLine(format))
        {
            return count.TryFormat(destination, out charsWritten, default, CultureInfo.InvariantCulture);
        }

        if (count == 0)
        {
            charsWritten = 0;
            return true;
        }

        return destination.TryWrite(CultureInfo.InvariantCulture, $" ({count} more {verb} since the last such line)", out charsWritten);
    }
}
