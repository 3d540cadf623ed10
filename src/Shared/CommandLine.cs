namespace Egress.Hosting;

/// <summary>
/// A deliberately small command-line reader shared by both hosts: <c>--name value</c>, <c>--name=value</c>,
/// flags, repeatable options and positional words. Anything not declared is an error, so a typo never passes.
/// </summary>
internal sealed class CommandLine
{
    private readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);

    private CommandLine(List<string> positional) => Positional = positional;

    public IReadOnlyList<string> Positional { get; }

    public bool Has(string flag) => _flags.Contains(flag);

    public string? Value(string option) => _values.TryGetValue(option, out var list) ? list[^1] : null;

    public IReadOnlyList<string> Values(string option) => _values.TryGetValue(option, out var list) ? list : [];

    /// <summary>Parses <paramref name="args"/>; on failure returns null and an error naming the offending word.</summary>
    public static CommandLine? Parse(
        IReadOnlyList<string> args,
        IReadOnlySet<string> optionsWithValue,
        IReadOnlySet<string> flags,
        out string? error)
    {
        var result = new CommandLine([]);
        var positional = (List<string>)result.Positional;
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg == "--")
            {
                if (arg == "-h")
                {
                    result._flags.Add("--help");
                    continue;
                }

                positional.Add(arg);
                continue;
            }

            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            var name = eq < 0 ? arg : arg[..eq];
            if (flags.Contains(name))
            {
                if (eq >= 0)
                {
                    error = $"option '{name}' takes no value";
                    return null;
                }

                result._flags.Add(name);
            }
            else if (optionsWithValue.Contains(name))
            {
                string value;
                if (eq >= 0)
                {
                    value = arg[(eq + 1)..];
                }
                else if (i + 1 < args.Count)
                {
                    value = args[++i];
                }
                else
                {
                    error = $"option '{name}' needs a value";
                    return null;
                }

                if (!result._values.TryGetValue(name, out var list))
                {
                    result._values[name] = list = [];
                }

                list.Add(value);
            }
            else
            {
                error = $"unknown option '{name}' (see --help)";
                return null;
            }
        }

        error = null;
        return result;
    }
}
