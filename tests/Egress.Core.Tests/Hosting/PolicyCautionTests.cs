using Egress.Configuration;
using Egress.Enclave.Check;
using Egress.Hosting;

namespace Egress.Tests.Hosting;

/// <summary>
/// A policy that denies everything while it looks meant to allow something gets a warning where the policy line is
/// written (both hosts' start, <c>egress-enclave check</c>): before, an Evervault file with an empty list (allow-all
/// there) started with only "(egress enabled, 0 destinations)".
/// </summary>
public sealed class PolicyCautionTests
{
    [TestCase("[egress]\nenabled = true\ndestinations = []\n", "egress.enabled = true with no destinations: every connection and every DNS name is denied (an Evervault enclave allows everything with an empty list; Egress fails closed: write destinations = [\"*\"] to allow everything)")]
    [TestCase("[egress]\nenabled = true\n", "egress.enabled = true with no destinations: every connection and every DNS name is denied (an Evervault enclave allows everything with an empty list; Egress fails closed: write destinations = [\"*\"] to allow everything)")]
    [TestCase("[egress]\nenabled = false\ndestinations = [\"*\", \"api.example.com\"]\n", "egress.enabled = false: every connection and every DNS name is denied, and the 2 destinations listed are not used")]
    public void APolicyThatDeniesEverythingByMistakeIsWarnedAboutAtStartAndByCheck(string file, string caution)
    {
        var configuration = EgressConfiguration.Parse(file, "enclave.toml");
        using var logs = new LogCapture();

        HostLog.Policy(logs.Factory.CreateLogger("Egress.Test"), configuration.GetPolicyDigest());

        Assert.That(logs.EventIds, Is.EqualTo(new[] { 2, 4 }));
        Assert.That(logs.Lines[1], Is.EqualTo("Warning: " + caution));
        Assert.That(Check(configuration), Does.Contain(Environment.NewLine + "         warning: " + caution + Environment.NewLine));
    }

    [TestCase("[egress]\nenabled = true\ndestinations = [\"api.example.com\"]\n")]
    [TestCase("[egress]\nenabled = false\n")]
    [TestCase("")]
    public void APolicyAsMeantGetsNoWarning(string file)
    {
        var configuration = EgressConfiguration.Parse(file, "enclave.toml");
        using var logs = new LogCapture();

        HostLog.Policy(logs.Factory.CreateLogger("Egress.Test"), configuration.GetPolicyDigest());

        Assert.That(logs.EventIds, Is.EqualTo(new[] { 2 }));
        Assert.That(Check(configuration), Does.Not.Contain("warning"));
    }

    private static string Check(EgressConfiguration configuration)
    {
        Assert.That(CheckTarget.TryParse("api.example.com", out CheckTarget? target, out string? error), Is.True, error);
        var output = new StringWriter();
        new CheckCommand(configuration, configuration.CreatePolicy(configuration.CreateCache()), output).Run(target!);
        return output.ToString();
    }
}
