using System.Collections.Frozen;
using System.Text;

namespace Egress.Diagnostics;

/// <summary>
/// The one casing of metric tag values: snake_case (<c>NotRedirected</c> becomes <c>not_redirected</c>,
/// <c>AReadError</c> becomes <c>a_read_error</c>), computed once per enum type so that counting allocates nothing.
/// </summary>
internal static class MetricTag
{
    /// <summary>The snake_case tag value of an enum member (its number for a value without a name).</summary>
    public static string Of<TEnum>(TEnum value)
        where TEnum : struct, Enum =>
        Names<TEnum>.ByValue.TryGetValue(value, out string? name) ? name : SnakeCase(value.ToString());

    /// <summary>Converts a PascalCase identifier to snake_case: an underscore before every upper-case letter that
    /// follows another character, then all lower-case.</summary>
    public static string SnakeCase(string identifier)
    {
        var text = new StringBuilder(identifier.Length + 4);
        for (int i = 0; i < identifier.Length; i++)
        {
            char c = identifier[i];
            if (char.IsUpper(c) && i > 0)
            {
                text.Append('_');
            }

            text.Append(char.ToLowerInvariant(c));
        }

        return text.ToString();
    }

    private static class Names<TEnum>
        where TEnum : struct, Enum
    {
        public static readonly FrozenDictionary<TEnum, string> ByValue =
            Enum.GetValues<TEnum>().Distinct().ToFrozenDictionary(v => v, v => SnakeCase(v.ToString()));
    }
}
