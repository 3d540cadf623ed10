using System.Diagnostics;

namespace Egress.Tests.Deploy;

/// <summary>
/// The demo's namespace prefix: <c>samples/demo.sh</c> hard-coded <c>egress-demo</c>, so a second run (or anyone's
/// namespaces of that name) collided with it, while <c>samples/netns/topology.sh</c> took a prefix. The demo takes
/// <c>EGRESS_DEMO_PREFIX</c>, and both scripts refuse a prefix that could not name namespaces, directories and
/// interfaces, before they touch anything (no root needed: nothing is run with an invalid prefix).
/// </summary>
[TestFixture]
public sealed class DemoPrefixTests
{
    [TestCase("bad/prefix")]
    [TestCase("-demo")]
    [TestCase("a demo")]
    [TestCase("demo.*")]
    [TestCase("abcdefghijklmnopqrstuvwxyz0123456")] // 33 characters
    public void TheDemoRefusesAnInvalidPrefixBeforeItDoesAnything(string prefix)
    {
        (int code, string error) = Bash(["samples/demo.sh"], prefix);

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(2));
            Assert.That(error, Does.Contain($"invalid namespace prefix '{prefix}': use 1 to 32 letters, digits, '-' and '_', starting with a letter or digit"));
            Assert.That(error, Does.Not.Contain("needs root"), "refused before the root check");
        });
    }

    [TestCase("up")]
    [TestCase("down")]
    public void TheTopologyRefusesAnInvalidPrefix(string verb)
    {
        (int code, string error) = Bash(["samples/netns/topology.sh", verb, "x/../y"]);

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(2));
            Assert.That(error, Does.Contain("invalid namespace prefix 'x/../y'"));
        });
    }

    [TestCase("egress-demo")]
    [TestCase("fixA-demo")]
    [TestCase("run_2")]
    [TestCase("abcdefghijklmnopqrstuvwxyz012345")] // 32 characters
    public void AValidPrefixIsAccepted(string prefix)
    {
        (int code, string error) = Bash(["-c", ". samples/netns/topology.sh && egress_netns_check_prefix \"$1\"", "check", prefix]);

        Assert.That((code, error), Is.EqualTo((0, string.Empty)));
    }

    [Test]
    public void TheReadmeSaysHowToChooseThePrefix()
    {
        Assert.That(RepositoryFiles.Read("README.md"), Does.Contain("EGRESS_DEMO_PREFIX"));
    }

    private static (int Code, string Error) Bash(string[] arguments, string? demoPrefix = null)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardError = true, RedirectStandardOutput = true, WorkingDirectory = RepositoryFiles.Root() };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        if (demoPrefix is not null)
        {
            start.Environment["EGRESS_DEMO_PREFIX"] = demoPrefix;
        }

        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        string stderr = process.StandardError.ReadToEnd();
        Assert.That(process.WaitForExit(TimeSpan.FromSeconds(30)), Is.True, "the script did not finish");
        _ = stdout.GetAwaiter().GetResult();
        return (process.ExitCode, stderr);
    }
}
