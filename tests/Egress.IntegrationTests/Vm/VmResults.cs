namespace Egress.IntegrationTests.Vm;

/// <summary>
/// What tests/vm/guest.sh wrote to its results file: <c>PASS case | detail</c>, <c>FAIL case | reason</c>,
/// <c>INFO what | measurement</c>, and <c>END</c> once every case ran.
/// </summary>
internal sealed class VmResults
{
    private VmResults(Dictionary<string, (bool Passed, string Detail)> outcomes, Dictionary<string, string> measurements, bool finished, string tail)
    {
        Outcomes = outcomes;
        Measurements = measurements;
        Finished = finished;
        Tail = tail;
    }

    public IReadOnlyDictionary<string, (bool Passed, string Detail)> Outcomes { get; }

    public IReadOnlyDictionary<string, string> Measurements { get; }

    public bool Finished { get; }

    /// <summary>What to show when a case is missing: the suite's own output.</summary>
    public string Tail { get; }

    public static VmResults Read(string path, string runOutput)
    {
        var outcomes = new Dictionary<string, (bool, string)>(StringComparer.Ordinal);
        var measurements = new Dictionary<string, string>(StringComparer.Ordinal);
        var finished = false;
        var lines = File.Exists(path) ? File.ReadAllLines(path) : [];
        foreach (var line in lines)
        {
            if (line == "END")
            {
                finished = true;
                continue;
            }

            var space = line.IndexOf(' ', StringComparison.Ordinal);
            var bar = line.IndexOf(" | ", StringComparison.Ordinal);
            if (space < 0 || bar < space)
            {
                continue;
            }

            var kind = line[..space];
            var name = line[(space + 1)..bar];
            var detail = line[(bar + 3)..];
            switch (kind)
            {
                case "PASS":
                case "FAIL":
                    // A case reported twice keeps its first failure.
                    if (!outcomes.TryGetValue(name, out var earlier) || earlier.Item1)
                    {
                        outcomes[name] = (kind == "PASS", detail);
                    }

                    break;
                case "INFO":
                    measurements[name] = detail;
                    break;
            }
        }

        return new VmResults(outcomes, measurements, finished, runOutput.Length > 3000 ? runOutput[^3000..] : runOutput);
    }
}
