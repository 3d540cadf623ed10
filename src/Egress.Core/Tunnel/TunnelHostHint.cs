using System.Buffers;
using System.Text;

namespace Egress.Tunnel;

/// <summary>Validation of the optional host name hint carried by a TCP tunnel request.</summary>
internal static class TunnelHostHint
{
    /// <summary>The longest hint, in bytes: the longest DNS name in text form.</summary>
    internal const int MaxLength = 253;

    private const string AllowedCharacters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._";

    private static readonly SearchValues<byte> s_allowedBytes = SearchValues.Create(Encoding.ASCII.GetBytes(AllowedCharacters));
    private static readonly SearchValues<char> s_allowedChars = SearchValues.Create(AllowedCharacters);

    /// <summary>True when <paramref name="hint"/> is 1..253 bytes of ASCII letters, digits, '-', '.' or '_'.</summary>
    internal static bool IsValid(ReadOnlySpan<byte> hint) =>
        hint.Length is > 0 and <= MaxLength && !hint.ContainsAnyExcept(s_allowedBytes);

    /// <summary>True when <paramref name="hint"/> is 1..253 ASCII letters, digits, '-', '.' or '_'.</summary>
    internal static bool IsValid(ReadOnlySpan<char> hint) =>
        hint.Length is > 0 and <= MaxLength && !hint.ContainsAnyExcept(s_allowedChars);
}
