namespace Egress.Diagnostics;

/// <summary>
/// The two forms of a log value that reads as part of a sentence: in the message template it is written
/// <c>{Name:line}</c> and formats as its fragment of the line (<c>, conn 0123456789abcdef</c>, or nothing when absent);
/// in a structured sink (<c>--log-format json</c>'s <c>State</c>, a test's state values) it is formatted with no format
/// and reads as the bare value (<c>0123456789abcdef</c>, or empty when absent). So a line's text and its fields each
/// read as what they are, from one value, formatted only when a line is written.
/// </summary>
internal static class LogFragment
{
    /// <summary>The format that asks for the line fragment (<c>{Name:line}</c> in a template).</summary>
    public const string LineFormat = "line";

    /// <summary>Whether <paramref name="format"/> asks for the line fragment.</summary>
    public static bool IsLine(ReadOnlySpan<char> format) => format.SequenceEqual(LineFormat);
}
