using System.Globalization;

namespace Egress.Diagnostics;

/// <summary>
/// How many lines of a failure line's kind its rate limit held back (<see cref="LogRateLimit"/> in windowed mode,
/// <see cref="LogRateLimit.FailureLinesPerInterval"/> a second), in that line: <c>{HeldBack:line}</c> writes
/// <c> (3 more such lines held back since the last one: at most 10 a second)</c>, or nothing for 0; the structured value
/// is the count (<see cref="LogFragment"/>). One template per line for both forms. With a verb, for a once-a-second
/// refusal line: <c> (12 more refused since the last such line)</c>, again nothing for 0 (a first line read
/// "(0 more refused since the last such line)", a field trial found).
/// </summary>
/// <param name="count">The lines held back since the last one written.</param>
/// <param name="verb">What was done to what the held-back lines were about ("refused", "rejected"); null for a
/// failure line's wording.</param>
internal readonly struct HeldBackLines(long count, string? verb = null) : ISpanFormattable
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

        return verb is not null
            ? destination.TryWrite(CultureInfo.InvariantCulture, $" ({count} more {verb} since the last such line)", out charsWritten)
            : destination.TryWrite(
                CultureInfo.InvariantCulture,
                $" ({count} more such lines held back since the last one: at most {LogRateLimit.FailureLinesPerInterval} a second)",
                out charsWritten);
    }
}
