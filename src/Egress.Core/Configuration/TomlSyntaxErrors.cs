using System.Globalization;
using System.Numerics;
using System.Text.RegularExpressions;
using Tomlyn.Syntax;

namespace Egress.Configuration;

/// <summary>
/// Tomlyn's syntax errors in this project's words, where Tomlyn's own fall short of them: a table or key defined twice
/// (Tomlyn quotes the first definition's whole text, newlines included: "The key `egress` is already defined at (1,1)
/// with `[egress]\nenabled = true` and cannot be redefined") and an integer beyond 64 bits (Tomlyn names neither the
/// key nor a range). Any other error keeps Tomlyn's message, on one line.
/// </summary>
internal static partial class TomlSyntaxErrors
{
    /// <summary>Creates the error for one of Tomlyn's diagnostics of <paramref name="text"/>.</summary>
    public static ConfigurationException Create(DiagnosticMessage diagnostic, DocumentSyntax document, string text, string sourceName)
    {
        TextPosition start = diagnostic.Span.Start;
        bool atEnd = diagnostic.Span.Offset < 0 || diagnostic.Message.Contains("`<eof>`", StringComparison.Ordinal);
        var location = atEnd
            ? AfterLastCharacter(text, sourceName) // Tomlyn's end-of-file token has no position (it reads as line 1, column 1)
            : new SourceLocation(sourceName, start.Line + 1, start.Column + 1);
        return Redefinition(diagnostic, document, location)
            ?? IntegerBeyond64Bits(diagnostic, document, text, location)
            ?? (atEnd ? null : UnusualSpace(diagnostic.Span.Offset, text, location))
            ?? new ConfigurationException(location, null, PlainWords(OneLine(diagnostic.Message)));
    }

    /// <summary>A space TOML does not allow (a no-break space copied from a web page) where the error is: Tomlyn
    /// quotes the invisible character ("Unexpected token [ ] found", a trial), so it is named.</summary>
    private static ConfigurationException? UnusualSpace(int offset, string text, SourceLocation location)
    {
        if (offset < 0 || offset >= text.Length)
        {
            return null;
        }

        char c = text[offset];
        string? name = c switch
        {
            '\u00A0' => "no-break space",
            '\u200B' => "zero-width space",
            '\uFEFF' => "zero-width no-break space (a byte order mark)",
            '\u3000' => "ideographic space",
            >= '\u2000' and <= '\u200A' or '\u202F' or '\u205F' or '\u1680' => "typographic space",
            _ => null,
        };
        return name is null ? null : new ConfigurationException(
            location,
            null,
            string.Create(CultureInfo.InvariantCulture, $"a {name} (U+{(int)c:X4}) here, which TOML does not allow: only spaces and tabs separate its parts (text copied from a web page or a word processor often carries one); retype it as a space"));
    }

    /// <summary>Where a file that ends too early ends: just after its last character that is not white space (the
    /// unclosed array or table is on that line, or before it), line and column from 1.</summary>
    private static SourceLocation AfterLastCharacter(string text, string sourceName)
    {
        int last = text.Length - 1;
        while (last >= 0 && char.IsWhiteSpace(text[last]))
        {
            last--;
        }

        int line = 1;
        int lineStart = 0;
        for (int i = 0; i <= last; i++)
        {
            if (text[i] == '\n')
            {
                line++;
                lineStart = i + 1;
            }
        }

        return new SourceLocation(sourceName, line, last + 1 - lineStart + 1);
    }

    // Tomlyn's token names ("Unexpected token `<eof>` (token: `Eof`)", "`␤` (token: `newline`)") in plain words.
    private static string PlainWords(string message) =>
        TokenName().Replace(message, string.Empty)
            .Replace("Unexpected token `<eof>`", "The file ends early", StringComparison.Ordinal)
            .Replace("Unexpected token found `\u2424`", "Unexpected end of line", StringComparison.Ordinal);

    private static ConfigurationException? Redefinition(DiagnosticMessage diagnostic, DocumentSyntax document, SourceLocation location)
    {
        Match match = AlreadyDefined().Match(diagnostic.Message);
        if (!match.Success)
        {
            return null;
        }

        // Tomlyn's path numbers the tables of an array ([[host.enclaves]] cid: host.enclaves.0.cid); the project's keys do not.
        string path = string.Join('.', match.Groups["path"].Value.Split('.').Where(part => !part.All(char.IsAsciiDigit)));
        string first = $"first at line {match.Groups["line"].Value}";
        for (int i = 0; i < document.Tables.ChildrenCount; i++)
        {
            TableSyntaxBase? table = document.Tables.GetChild(i);
            if (table?.Name is not null && table.Span.Offset == diagnostic.Span.Offset)
            {
                return new ConfigurationException(location, null, $"table [{KeyText(table.Name)}] is defined twice ({first})");
            }
        }

        return new ConfigurationException(location, path, $"defined twice ({first})");
    }

    private static ConfigurationException? IntegerBeyond64Bits(DiagnosticMessage diagnostic, DocumentSyntax document, string text, SourceLocation location)
    {
        int offset = diagnostic.Span.Offset;
        if (offset < 0 || offset >= text.Length)
        {
            return null; // an error at the end of the text (Tomlyn's end-of-file position is -1)
        }

        int end = offset;
        while (end < text.Length && (char.IsAsciiLetterOrDigit(text[end]) || text[end] is '_' or '+' or '-'))
        {
            end++;
        }

        string literal = text[offset..end];
        if (!IsIntegerBeyond64Bits(literal) || KeyPathAt(document, offset) is not { } path)
        {
            return null;
        }

        int dot = path.IndexOf('.', StringComparison.Ordinal);
        ConfigurationKey? key = dot < 0 ? null : ConfigurationKeys.Find(path[..dot], path[(dot + 1)..]);
        return new ConfigurationException(location, path, key is { Kind: ConfigurationValueKind.Integer }
            ? ConfigurationReader.OutOfRange(key.Min, key.Max, literal)
            : $"integer {literal} does not fit in 64 bits (TOML integers are {long.MinValue} to {long.MaxValue})");
    }

    // A TOML integer (decimal with an optional sign, or 0x, 0o, 0b; underscores between digits) outside a long's range.
    private static bool IsIntegerBeyond64Bits(string literal)
    {
        Match match = IntegerLiteral().Match(literal);
        if (!match.Success)
        {
            return false;
        }

        (string digits, int radix) = match.Groups["hex"].Success ? (match.Groups["hex"].Value, 16)
            : match.Groups["oct"].Success ? (match.Groups["oct"].Value, 8)
            : match.Groups["bin"].Success ? (match.Groups["bin"].Value, 2)
            : (match.Groups["dec"].Value, 10);
        BigInteger value = BigInteger.Zero;
        foreach (char digit in digits)
        {
            if (digit != '_')
            {
                value = (value * radix) + (digit <= '9' ? digit - '0' : (digit | 0x20) - 'a' + 10);
            }
        }

        if (match.Groups["sign"].Value == "-")
        {
            value = -value;
        }

        return value < long.MinValue || value > long.MaxValue;
    }

    // The dotted path of the innermost key whose key/value pair holds offset: [host] max_streams = ..., host = { ... },
    // [[host.enclaves]] cid = ..., an element of egress.ports = [...].
    private static string? KeyPathAt(DocumentSyntax document, int offset)
    {
        if (KeyPathIn(Children(document.KeyValues), string.Empty, offset) is { } path)
        {
            return path;
        }

        for (int i = 0; i < document.Tables.ChildrenCount; i++)
        {
            TableSyntaxBase? table = document.Tables.GetChild(i);
            if (table?.Name is not null && Holds(table, offset))
            {
                return KeyPathIn(Children(table.Items), KeyText(table.Name) + ".", offset);
            }
        }

        return null;
    }

    private static string? KeyPathIn(IEnumerable<KeyValueSyntax?> items, string prefix, int offset)
    {
        foreach (KeyValueSyntax? item in items)
        {
            if (item?.Key is null || !Holds(item, offset))
            {
                continue;
            }

            string path = prefix + KeyText(item.Key);
            return item.Value is InlineTableSyntax inline
                ? KeyPathIn(Children(inline.Items).Select(entry => entry?.KeyValue), path + ".", offset) ?? path
                : path;
        }

        return null;
    }

    private static IEnumerable<T?> Children<T>(SyntaxList<T> list)
        where T : SyntaxNode
    {
        for (int i = 0; i < list.ChildrenCount; i++)
        {
            yield return list.GetChild(i);
        }
    }

    private static bool Holds(SyntaxNode node, int offset) =>
        offset >= node.Span.Start.Offset && offset <= node.Span.End.Offset;

    // The key as TOML means it, whatever its spelling: [ scaling ], [host."more"] read as scaling and host.more.
    private static string KeyText(KeySyntax key)
    {
        var parts = new List<string?> { Part(key.Key) };
        for (int i = 0; i < key.DotKeys.ChildrenCount; i++)
        {
            parts.Add(Part(key.DotKeys.GetChild(i)?.Key));
        }

        return string.Join('.', parts);

        static string? Part(BareKeyOrStringValueSyntax? part) => part switch
        {
            BareKeySyntax bare => bare.Key?.Text,
            StringValueSyntax quoted => quoted.Value,
            _ => null,
        };
    }

    private static string OneLine(string message) =>
        string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    [GeneratedRegex(@" \(token: `[^`]*`\)", RegexOptions.CultureInvariant)]
    private static partial Regex TokenName();

    [GeneratedRegex(@"^The key `(?<path>[^`]*)` is already defined at \((?<line>[0-9]+),(?<column>[0-9]+)\)", RegexOptions.CultureInvariant)]
    private static partial Regex AlreadyDefined();

    [GeneratedRegex("^(?<sign>[+-]?)(?:0x(?<hex>[0-9A-Fa-f]+(?:_[0-9A-Fa-f]+)*)|0o(?<oct>[0-7]+(?:_[0-7]+)*)|0b(?<bin>[01]+(?:_[01]+)*)|(?<dec>[0-9]+(?:_[0-9]+)*))$", RegexOptions.CultureInvariant)]
    private static partial Regex IntegerLiteral();
}
