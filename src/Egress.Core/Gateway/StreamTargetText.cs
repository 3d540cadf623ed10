using System.Net;
using Egress.Diagnostics;

namespace Egress.Gateway;

/// <summary>
/// A refused stream's destination in its log line: <c>{Target:line}</c> writes <c> to 198.51.100.7:443</c>, or nothing
/// for a DNS stream (which names none), and the structured value is the destination alone (empty for none;
/// <see cref="LogFragment"/>). Refusals only: not on a relayed connection's path.
/// </summary>
internal readonly struct StreamTargetText(IPEndPoint? destination) : IFormattable
{
    /// <summary>The destination alone, or empty.</summary>
    /// <inheritdoc/>
    public override string ToString() => destination?.ToString() ?? string.Empty;

    /// <inheritdoc/>
    public string ToString(string? format, IFormatProvider? formatProvider) =>
        LogFragment.IsLine(format) && destination is not null ? $" to {destination}" : ToString();
}
