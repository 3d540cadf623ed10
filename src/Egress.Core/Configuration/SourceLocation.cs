namespace Egress.Configuration;

/// <summary>A place in a configuration source: the source's name and a 1-based line and column.</summary>
/// <param name="SourceName">The name of the source (usually the file path given to <see cref="EgressConfiguration.Load"/>).</param>
/// <param name="Line">The 1-based line, or 0 when the value has no place in the source (a default).</param>
/// <param name="Column">The 1-based column, or 0 when the value has no place in the source (a default).</param>
public readonly record struct SourceLocation(string SourceName, int Line, int Column)
{
    /// <summary>Formats the location as <c>file:line:col</c>, or just <c>file</c> when it has no line.</summary>
    /// <returns>The formatted location.</returns>
    public override string ToString() =>
        Line > 0 ? $"{SourceName}:{Line}:{Column}" : SourceName;
}
