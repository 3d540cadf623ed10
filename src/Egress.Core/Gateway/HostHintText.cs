using Egress.Diagnostics;

namespace Egress.Gateway;

/// <summary>
/// The enclave's host hint in a parent's connection line: <c>{Hint:line}</c> writes <c> (for api.example.com)</c>, or
/// nothing when the request carried no hint, and the structured value is the name alone (empty without a hint;
/// <see cref="LogFragment"/>). A value: no string is built for a connection whose line is not written.
/// </summary>
internal readonly struct HostHintText(string? hint) : ISpanFormattable
{
    private const string Prefix = " (for ";

    /// <summary>The name alone, or empty without a hint.</summary>
    /// <inheritdoc/>
    public override string ToString() => hint ?? string.Empty;

    /// <inheritdoc/>
    public string ToString(string? format, IFormatProvider? formatProvider) =>
        LogFragment.IsLine(format) && hint is not null ? $"{Prefix}{hint})" : ToString();

    /// <inheritdoc/>
    public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format, IFormatProvider? provider)
    {
        if (hint is null)
        {
            charsWritten = 0;
            return true;
        }

        return LogFragment.IsLine(format)
            ? destination.TryWrite(System.Globalization.CultureInfo.InvariantCulture, $"{Prefix}{hint})", out charsWritten)
            : destination.TryWrite(System.Globalization.CultureInfo.InvariantCulture, $"{hint}", out charsWritten);
    }
}
