using System.Globalization;

namespace Egress.Diagnostics;

/// <summary>
/// How many lines of a failure line's kind its rate limit held back (<see cref="LogRateLimit"/> in windowed mode,
/// <see cref="LogRateLimit.FailureLinesPerInterval"/> a second), in that line: <c>{HeldBack:line}</c> writes
/// <c> (3 more such lines held back since the last one: at most 10 a second)</c>, or nothing for 0; the structured value
/// is the count (<see cref="LogFragment"/>). One template per line for both forms.
/// </summary>
/// <param name="count">The lines held back since the last one written.</param>
internal readonly struct HeldBackLines(long count) : ISpanFormattable
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

        return destination.TryWrite(
            CultureInfo.InvariantCulture,
            $" ({count} more such lines held back since the last one: at most {LogRateLimit.FailureLinesPerInterval} a second)",
            out charsWritten);
    }
}
