using System.Text.Json;
using System.Text.RegularExpressions;

namespace Egress.Tests.Deploy;

/// <summary>
/// The enclave image's start command (deploy/enclave/Dockerfile, its last stage), read as <c>nitro-cli build-enclave</c>
/// reads it: the EIF runs the image's <c>CMD</c> alone, and its <c>ENTRYPOINT</c> only when there is no <c>CMD</c>
/// (aws-nitro-enclaves-cli, enclave_build: <c>extract_image</c>). The image had <c>ENTRYPOINT</c> bootstrap.sh and
/// <c>CMD</c> /app/run: <c>docker run</c> started bootstrap.sh, a real enclave would have started the application
/// alone, with lo down, no redirect rules and no egress-enclave.
/// </summary>
[TestFixture]
public sealed partial class EnclaveDockerfileTests
{
    [Test]
    public void TheEnclaveStartsWithBootstrapFromCmdAlone()
    {
        var instructions = LastStage();
        string[] cmd = JsonSerializer.Deserialize<string[]>(Single(instructions, "CMD"))!;
        string[] copied = [.. instructions.Where(i => i.Name == "COPY").Select(i => i.Arguments.Split(' ')[^1])];

        Assert.Multiple(() =>
        {
            Assert.That(instructions.Select(i => i.Name), Has.None.EqualTo("ENTRYPOINT"), "nitro-cli ignores it when CMD is set");
            Assert.That(cmd, Has.Length.GreaterThanOrEqualTo(2));
            Assert.That(cmd[0], Is.EqualTo("/opt/egress/bootstrap.sh"), "bootstrap.sh first, the application after it");
            Assert.That(copied, Does.Contain(cmd[0]), "the image has bootstrap.sh where CMD runs it");
        });
    }

    /// <summary>An enclave's init ignores WORKDIR: the image tells bootstrap.sh where the application starts.</summary>
    [Test]
    public void TheApplicationDirectoryIsGivenToBootstrapNotOnlyAsWorkdir()
    {
        var instructions = LastStage();
        string workdir = instructions.Last(i => i.Name == "WORKDIR").Arguments;

        Assert.That(EnvironmentOf(instructions), Does.ContainKey("EGRESS_APP_DIR").WithValue(workdir));
    }

    /// <summary>The ENV key=value pairs of the stage, quotes removed (later ones win, as in Docker).</summary>
    private static Dictionary<string, string> EnvironmentOf(IReadOnlyList<(string Name, string Arguments)> instructions)
    {
        var pairs = new Dictionary<string, string>();
        foreach (var (_, arguments) in instructions.Where(i => i.Name == "ENV"))
        {
            foreach (Match pair in EnvPairPattern().Matches(arguments))
            {
                pairs[pair.Groups[1].Value] = pair.Groups[2].Value.Trim('"');
            }
        }

        return pairs;
    }

    private static string Single(IReadOnlyList<(string Name, string Arguments)> instructions, string name)
    {
        var found = instructions.Where(i => i.Name == name).ToList();
        Assert.That(found, Has.Count.EqualTo(1), $"one {name} in the image's last stage");
        return found[0].Arguments;
    }

    /// <summary>The instructions after the last FROM, continuation lines joined, comments dropped.</summary>
    private static List<(string Name, string Arguments)> LastStage()
    {
        var instructions = new List<(string Name, string Arguments)>();
        string pending = string.Empty;
        foreach (string raw in File.ReadAllLines(Path.Combine(RepositoryFiles.Root(), "deploy", "enclave", "Dockerfile")))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue; // Docker drops comment lines inside a continuation too
            }

            if (line.EndsWith('\\'))
            {
                pending += line[..^1] + " ";
                continue;
            }

            string whole = pending + line;
            pending = string.Empty;
            Match instruction = InstructionPattern().Match(whole);
            if (!instruction.Success)
            {
                continue;
            }

            if (instruction.Groups[1].Value.Equals("FROM", StringComparison.OrdinalIgnoreCase))
            {
                instructions.Clear();
                continue;
            }

            instructions.Add((instruction.Groups[1].Value.ToUpperInvariant(), Regex.Replace(instruction.Groups[2].Value.Trim(), @"\s+", " ")));
        }

        Assert.That(instructions, Is.Not.Empty, "the Dockerfile's last stage");
        return instructions;
    }

    [GeneratedRegex(@"^([A-Za-z]+)\s+(.*)$")]
    private static partial Regex InstructionPattern();

    [GeneratedRegex(@"([A-Za-z_][A-Za-z0-9_]*)=(""[^""]*""|\S*)")]
    private static partial Regex EnvPairPattern();
}
