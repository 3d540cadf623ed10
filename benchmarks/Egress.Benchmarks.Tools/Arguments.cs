using System.Globalization;
using System.Net;

namespace Egress.Benchmarks.Tools;

/// <summary>The <c>--name value</c> pairs of one command line.</summary>
internal sealed class Arguments
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

    public static Arguments Parse(ReadOnlySpan<string> args)
    {
        var parsed = new Arguments();
        for (int i = 0; i < args.Length; i += 2)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            {
                throw new ArgumentException($"expected '--name value' at '{args[i]}'");
            }

            parsed._values[args[i]] = args[i + 1];
        }

        return parsed;
    }

    public string Text(string name) =>
        _values.TryGetValue(name, out string? value) ? value : throw new ArgumentException($"missing {name}");

    public int Int(string name) =>
        int.TryParse(Text(name), NumberStyles.None, CultureInfo.InvariantCulture, out int value) && value > 0
            ? value
            : throw new ArgumentException($"{name} must be a positive integer");

    public IPEndPoint EndPoint(string name) =>
        IPEndPoint.TryParse(Text(name), out IPEndPoint? endPoint) && endPoint.Port != 0
            ? endPoint
            : throw new ArgumentException($"{name} must be IP:PORT");
}
