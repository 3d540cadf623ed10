using System.Globalization;
using System.Text.RegularExpressions;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>What an unmodified `dig` printed: status, header flags, answer records, the transport of the answer.</summary>
internal sealed partial record DigResult(CommandResult Command, string? Status, IReadOnlyList<string> Flags, IReadOnlyList<DigRecord> Answers, string? Transport)
{
    /// <summary>dig's note when a UDP answer had TC=1 and it asked again over TCP.</summary>
    public const string RetriedOverTcpNote = ";; Truncated, retrying in TCP mode.";

    public bool RetriedOverTcp => Command.StandardOutput.Contains(RetriedOverTcpNote, StringComparison.Ordinal);

    public IReadOnlyList<string> AnswerData => [.. Answers.Select(record => record.Data)];

    public static DigResult Parse(CommandResult command)
    {
        var output = command.StandardOutput;
        var status = StatusPattern().Match(output);
        var flags = FlagsPattern().Match(output);
        var server = ServerPattern().Match(output);
        var answers = new List<DigRecord>();
        var inAnswer = false;
        foreach (var line in output.Split('\n'))
        {
            if (line.StartsWith(";; ANSWER SECTION:", StringComparison.Ordinal))
            {
                inAnswer = true;
                continue;
            }

            if (inAnswer && (line.Length == 0 || line.StartsWith(';')))
            {
                inAnswer = false;
                continue;
            }

            if (inAnswer)
            {
                var fields = line.Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries);
                answers.Add(new DigRecord(fields[0], int.Parse(fields[1], CultureInfo.InvariantCulture), fields[3], string.Join(' ', fields[4..])));
            }
        }

        return new DigResult(
            command,
            status.Success ? status.Groups[1].Value : null,
            flags.Success ? flags.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries) : [],
            answers,
            server.Success ? server.Groups[1].Value : null);
    }

    public override string ToString() => Command.ToString();

    [GeneratedRegex(@"->>HEADER<<- opcode: \w+, status: (\w+),")]
    private static partial Regex StatusPattern();

    [GeneratedRegex(@";; flags: ([a-z ]*);")]
    private static partial Regex FlagsPattern();

    [GeneratedRegex(@";; SERVER: \S+ \((UDP|TCP)\)")]
    private static partial Regex ServerPattern();
}
