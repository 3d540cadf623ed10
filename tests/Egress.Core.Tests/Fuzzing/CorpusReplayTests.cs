using Egress.Fuzzing;

namespace Egress.Tests.Fuzzing;

/// <summary>
/// Replays the fuzzing corpus (fuzz/corpus/&lt;target&gt;/: the seeds, the inputs worth keeping, and under
/// regressions/ every crash afl-fuzz found) through the same targets fuzz/run.sh fuzzes, so every test run checks
/// each parser's contract on them without afl-fuzz (docs/fuzzing.md).
/// </summary>
public sealed class CorpusReplayTests
{
    private static readonly string CorpusRoot = FindCorpus();

    public static IEnumerable<TestCaseData> CorpusFiles() =>
        from target in FuzzTarget.All
        let folder = Path.Combine(CorpusRoot, target.Name)
        where Directory.Exists(folder)
        from file in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
        let name = Path.GetRelativePath(CorpusRoot, file).Replace('\\', '/')
        select new TestCaseData(target.Name, name).SetName($"Replay({name})");

    public static IEnumerable<string> TargetNames() => FuzzTarget.All.Select(target => target.Name);

    [TestCaseSource(nameof(CorpusFiles))]
    public void InputKeepsTheParsersContract(string target, string file)
    {
        byte[] input = File.ReadAllBytes(Path.Combine(CorpusRoot, file));

        // Throws (FuzzInvariantException or the parser's own undocumented exception) when the contract is broken.
        FuzzVerdict verdict = FuzzTarget.Find(target)!.Run(input);

        Assert.That(verdict, Is.AnyOf(FuzzVerdict.Accepted, FuzzVerdict.Rejected));
    }

    [Test]
    public void EveryTargetHasACorpusAndEveryCorpusATarget()
    {
        string[] folders = [.. Directory.EnumerateDirectories(CorpusRoot).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];

        Assert.That(folders, Is.EquivalentTo(FuzzTarget.All.Select(target => target.Name)));
    }

    /// <summary>Seeds that all fail early teach the fuzzer nothing about the paths past the first check.</summary>
    [TestCaseSource(nameof(TargetNames))]
    public void SeedsReachBothAcceptanceAndRejection(string name)
    {
        FuzzTarget target = FuzzTarget.Find(name)!;
        FuzzVerdict[] verdicts =
        [
            .. Directory.EnumerateFiles(Path.Combine(CorpusRoot, target.Name), "*", SearchOption.TopDirectoryOnly)
                .Select(file => target.Run(File.ReadAllBytes(file))),
        ];

        Assert.That(verdicts, Has.Some.EqualTo(FuzzVerdict.Accepted).And.Some.EqualTo(FuzzVerdict.Rejected), target.Name);
    }

    private static string FindCorpus()
    {
        for (DirectoryInfo? directory = new(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            string corpus = Path.Combine(directory.FullName, "fuzz", "corpus");
            if (File.Exists(Path.Combine(directory.FullName, "Egress.sln")) && Directory.Exists(corpus))
            {
                return corpus;
            }
        }

        throw new InvalidOperationException("fuzz/corpus not found above the test directory.");
    }
}
