using System.Globalization;
using System.Text;

namespace Egress.Diagnostics;

/// <summary>
/// Text from a configuration file or a command line made safe to print in a one-line message: control characters (C0,
/// DEL, C1: a newline would split the line, an ESC sequence would reach the terminal) and format characters (the
/// bidirectional overrides and isolates of Unicode TR #36, zero-width characters) are written as C#-style escapes
/// (<c>\n</c>, <c>\t</c>, <c>\r</c>, <c>\u001B</c>); everything else is kept.
/// </summary>
internal static class PrintableText
{
    /// <summary>Escapes what <see cref="PrintableText"/> names; returns <paramref name="text"/> itself when nothing needs it.</summary>
    public static string Escape(string text)
    {
        int first = IndexOfUnprintable(text);
        if (first < 0)
        {
            return text;
        }

        var escaped = new StringBuilder(text.Length + 8).Append(text, 0, first);
        foreach (char c in text.AsSpan(first))
        {
            if (!IsUnprintable(c))
            {
                escaped.Append(c);
                continue;
            }

            escaped.Append(c switch
            {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                _ => string.Create(CultureInfo.InvariantCulture, $"\\u{(int)c:X4}"),
            });
        }

        return escaped.ToString();
    }

    /// <summary>The longest text <see cref="Shorten"/> keeps whole, in UTF-16 characters.</summary>
    public const int MaxQuoted = 300;

    /// <summary>
    /// Escapes <paramref name="text"/> (<see cref="Escape"/>) and, when the result is longer than <see cref="MaxQuoted"/>,
    /// keeps its first 256 characters followed by <c>… (N characters)</c>, N the length of <paramref name="text"/>: for
    /// text a message quotes from its input, which may be a megabyte on one line (300 keeps a DNS name, up to 253, whole).
    /// </summary>
    public static string Shorten(string text)
    {
        string escaped = Escape(text);
        if (escaped.Length <= MaxQuoted)
        {
            return escaped;
        }

        // Never cut between the two halves of a surrogate pair, nor inside an escape this wrote (a review saw
        // "…aaaa\u… (355 characters)"): back to its backslash. A backslash of the text itself may be taken for one; the
        // cut then comes a few characters early.
        int keep = char.IsHighSurrogate(escaped[255]) ? 255 : 256;
        int backslash = escaped.LastIndexOf('\\', keep - 1, Math.Min(keep, 6));
        if (backslash >= 0 && backslash + (escaped[backslash + 1] == 'u' ? 6 : 2) > keep)
        {
            keep = backslash;
        }
        return string.Create(CultureInfo.InvariantCulture, $"{escaped.AsSpan(0, keep)}… ({text.Length} characters)");
    }

    private static int IndexOfUnprintable(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (IsUnprintable(text[i]))
            {
                return i;
            }
        }

        return -1;
    }

    private static bool IsUnprintable(char c) =>
        char.IsControl(c) || (c >= 0x80 && CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.Format);
}
