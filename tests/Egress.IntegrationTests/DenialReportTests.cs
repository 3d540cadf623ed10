using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// What the enclave denies reaches the parent's log: an operator's trial found that egress-enclave's denials stay in the
/// enclave, whose console a production enclave (no debug mode) never shows, so a refused destination was invisible
/// from the parent. Unmodified clients in the enclave namespace are refused by egress-enclave itself (never sent on), and
/// egress-host logs the enclave's denial report within its 10 s period.
/// </summary>
[TestFixture]
public sealed class DenialReportTests : EgressFixture
{
    private static readonly TimeSpan ReportWait = TimeSpan.FromSeconds(20);

    [Test]
    public async Task TheParentLogsTheConnectionsAndNamesTheEnclaveRefused()
    {
        var first = await Clients.CurlAsync(Topology.Enclave, "http://198.18.0.99:8080/");
        var second = await Clients.CurlAsync(Topology.Enclave, "http://198.18.0.99:8080/");
        var dig = await Clients.DigAsync(Topology.Enclave, "exfil.attacker.example", "TXT");

        // Both denials in one report, or one each when the 10 s tick fell between the two curls (the review).
        var counted = new System.Text.RegularExpressions.Regex(@"enclave denied (\d+) connections? to 198\.18\.0\.99:8080 \(never_learned\) in the last");
        long Counted() => Deployment.Host.Lines.Select(line => counted.Match(line)).Where(m => m.Success).Sum(m => long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        string? connections = await Deployment.Host.WaitForLineAsync(_ => Counted() >= 2, ReportWait);
        string? names = await Deployment.Host.WaitForLineAsync(
            line => line.Contains("enclave denied 1 DNS question for exfil.attacker.example TXT (name_not_allowed)", StringComparison.Ordinal), ReportWait);

        Assert.Multiple(() =>
        {
            Assert.That(first.ExitCode, Is.AnyOf(Clients.RefusedOrReset), first.ToString);
            Assert.That(second.ExitCode, Is.AnyOf(Clients.RefusedOrReset), second.ToString);
            Assert.That(dig.Status, Is.EqualTo("NXDOMAIN"), dig.ToString);
            Assert.That(connections, Is.Not.Null, () => $"no denial report lines for both connections:\n{Deployment.Host.Output}");
            Assert.That(Counted(), Is.EqualTo(2), "each denial reported once");
            Assert.That(names, Is.Not.Null, () => $"no denial report line for the name:\n{Deployment.Host.Output}");
            Assert.That(Deployment.Host.Lines, Has.None.Contains("connection to 198.18.0.99"), "the enclave refused them: no tunnel request reached the parent");
            Assert.That(Deployment.Host.Lines.Count(line => line.Contains("the enclave reads the same policy as this parent's for it (sha256:", StringComparison.Ordinal)), Is.EqualTo(1),
                () => $"both hosts read one enclave.toml: the parent says so once, from the reports' policy digest:\n{Deployment.Host.Output}");
        });
    }
}
