using Egress.Diagnostics;

namespace Egress.Configuration;

/// <summary>
/// An error in a configuration source, located at the offending key or value. The message reads
/// <c>file:line:col: error: what (key 'section.key')</c>, the form compilers use, so editors can jump to it. Control and
/// format characters that the problem quotes from the file (a destination with a newline or an escape sequence in it)
/// are escaped (<c>\n</c>, <c>\u001B</c>) in the message and in <see cref="Problem"/>, so that printing either never
/// splits a line or reaches the terminal; the key is escaped too in the message, and shortened past
/// 300 characters (a key of a megabyte, <see cref="Key"/> keeps it whole). When several entries of a list are invalid
/// (destinations, listen addresses, DNS upstreams, internal networks), the message has one such line for each, in the
/// file's order, and the properties describe the first.
/// </summary>
public sealed class ConfigurationException : Exception
{
    /// <summary>Creates an error located at <paramref name="location"/>.</summary>
    /// <param name="location">Where the offending key or value is.</param>
    /// <param name="key">The dotted key path the error is about (<c>egress.destinations</c>), or null for a TOML syntax error that concerns no key.</param>
    /// <param name="problem">What is wrong, without location or key (<c>expected a boolean, found a string</c>).</param>
    /// <exception cref="ArgumentNullException"><paramref name="problem"/> or the location's source name is null.</exception>
    internal ConfigurationException(SourceLocation location, string? key, string problem)
        : base(Format(location, key, PrintableText.Escape(problem ?? throw new ArgumentNullException(nameof(problem)))))
    {
        ArgumentNullException.ThrowIfNull(location.SourceName);
        SourceName = location.SourceName;
        Line = location.Line;
        Column = location.Column;
        Key = key;
        Problem = PrintableText.Escape(problem);
    }

    /// <summary>One error for several (a line each in the message); the properties are the first's.</summary>
    private ConfigurationException(ConfigurationException first, IEnumerable<ConfigurationException> more)
        : base(string.Join('\n', [first.Message, .. more.Select(error => error.Message)]))
    {
        SourceName = first.SourceName;
        Line = first.Line;
        Column = first.Column;
        Key = first.Key;
        Problem = first.Problem;
    }

    /// <summary>The errors as one exception: the only one, or the first with the others' lines after its own.</summary>
    /// <param name="errors">At least one error.</param>
    internal static ConfigurationException Combine(IReadOnlyList<ConfigurationException> errors) =>
        errors.Count == 1 ? errors[0] : new ConfigurationException(errors[0], errors.Skip(1));

    /// <summary>Gets the name of the source (usually the file path).</summary>
    public string SourceName { get; }

    /// <summary>Gets the 1-based line of the error, or 0 when it concerns a default value that is not in the source.</summary>
    public int Line { get; }

    /// <summary>Gets the 1-based column of the error, or 0 when it concerns a default value that is not in the source.</summary>
    public int Column { get; }

    /// <summary>Gets the dotted key path the error is about, or null for a TOML syntax error that concerns no key.</summary>
    public string? Key { get; }

    /// <summary>Gets what is wrong, without location or key.</summary>
    public string Problem { get; }

    private static string Format(SourceLocation location, string? key, string problem) =>
        key is null
            ? $"{location}: error: {problem}"
            : $"{location}: error: {problem} (key '{PrintableText.Shorten(key)}')";
}
