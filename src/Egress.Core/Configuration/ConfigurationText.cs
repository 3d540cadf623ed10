using System.Buffers;
using System.Globalization;
using System.Text.Unicode;

using Egress.Diagnostics;

namespace Egress.Configuration;

/// <summary>
/// What TOML 1.0 asks of a configuration's characters before its syntax, checked before Tomlyn reads the text so that
/// the error is located at the character and in this project's words: the file is UTF-8 (<see cref="Decode"/>), and no
/// control character other than tab and the line ends (<c>\n</c>, <c>\r\n</c>) appears anywhere in it, in a string, a
/// comment or between them (<see cref="Check"/>). Tomlyn has words of its own for each ("Invalid UTF-16 surrogate
/// sequence in TOML input." for a byte that is not UTF-8, "Invalid control character found \u0;" at the start of the
/// string that holds a NUL).
/// </summary>
internal static class ConfigurationText
{
    /// <summary>Decodes a file's bytes as UTF-8, without the byte order mark TOML allows.</summary>
    /// <exception cref="ConfigurationException">The bytes are not UTF-8: the first byte that is not, with its line,
    /// column (in characters) and byte offset; or the file starts with a UTF-16 byte order mark.</exception>
    public static string Decode(ReadOnlySpan<byte> bytes, string sourceName)
    {
        if (bytes is [0xFF, 0xFE, ..] or [0xFE, 0xFF, ..])
        {
            throw new ConfigurationException(
                new SourceLocation(sourceName, 1, 1),
                null,
                string.Create(CultureInfo.InvariantCulture, $"the file is UTF-16 text (it starts with the byte order mark 0x{bytes[0]:X2} 0x{bytes[1]:X2}); TOML files must be UTF-8"));
        }

        int skipped = bytes is [0xEF, 0xBB, 0xBF, ..] ? 3 : 0;
        ReadOnlySpan<byte> text = bytes[skipped..];
        char[] chars = new char[text.Length]; // UTF-8 never decodes to more UTF-16 code units than it has bytes
        if (Utf8.ToUtf16(text, chars, out int read, out int written, replaceInvalidSequences: false) == OperationStatus.Done)
        {
            return new string(chars, 0, written);
        }

        // InvalidData at text[read]: an invalid byte, or a sequence cut short (also by the end of the file).
        string before = new(chars, 0, written);
        throw new ConfigurationException(
            Locate(before, before.Length, sourceName),
            null,
            string.Create(CultureInfo.InvariantCulture, $"the file is not UTF-8 text (byte 0x{text[read]:X2} at byte offset {skipped + read}); TOML files must be UTF-8"));
    }

    /// <summary>Checks that the text has no character TOML forbids everywhere: a control character other than tab and
    /// the line ends, or (text given as a string) a lone UTF-16 surrogate.</summary>
    /// <exception cref="ConfigurationException">The first such character, named and located.</exception>
    public static void Check(string text, string sourceName)
    {
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c >= ' ' && c != '\u007F' && !char.IsSurrogate(c))
            {
                continue;
            }

            string? problem = c switch
            {
                '\t' or '\n' => null,
                '\r' when i + 1 < text.Length && text[i + 1] == '\n' => null,
                '\r' => @"a carriage return (\r) not followed by a line feed; TOML lines end with \n or \r\n",
                _ when char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) => null,
                _ when char.IsSurrogate(c) => string.Create(CultureInfo.InvariantCulture, $"the text is not Unicode: a lone UTF-16 surrogate (U+{(int)c:X4})"),
                _ => $"control character {PrintableText.Escape(c.ToString())} is not allowed in TOML (in a string, write it as the escape {PrintableText.Escape(c.ToString())})",
            };
            if (problem is not null)
            {
                throw new ConfigurationException(Locate(text, i, sourceName), null, problem);
            }

            if (char.IsHighSurrogate(c))
            {
                i++; // the low surrogate of the pair
            }
        }
    }

    /// <summary>The 1-based line and column of <paramref name="text"/>[<paramref name="index"/>], as Tomlyn counts
    /// them: lines end at <c>\n</c>, and a column is a character (a surrogate pair is one).</summary>
    public static SourceLocation Locate(string text, int index, string sourceName)
    {
        int line = 1;
        int lineStart = 0;
        for (int i = 0; i < index; i++)
        {
            if (text[i] == '\n')
            {
                line++;
                lineStart = i + 1;
            }
        }

        int column = 1;
        for (int i = lineStart; i < index; i++)
        {
            if (!(char.IsLowSurrogate(text[i]) && i > lineStart && char.IsHighSurrogate(text[i - 1])))
            {
                column++;
            }
        }

        return new SourceLocation(sourceName, line, column);
    }
}
