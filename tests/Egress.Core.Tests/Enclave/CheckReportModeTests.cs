using Egress.Configuration;
using Egress.Enclave.Check;

namespace Egress.Tests.Enclave;

/// <summary><c>egress-enclave check</c> with <c>egress.mode = "report"</c>: what report mode allows says so, and what it keeps denied says why.</summary>
public sealed class CheckReportModeTests
{
    private const string Report = """
        [egress]
        enabled = true
        mode = "report"
        destinations = ["api.example.com:443"]
        """;

    [Test]
    public void AnUnlistedNameIsAllowedByReportModeAndSaysEnforceDeniesIt()
    {
        (int code, string output) = Check("app.unlisted.test:443");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Does.Contain("dns:     allowed by report mode; enforce would deny: name not in allowlist"));
            Assert.That(output, Does.Contain("connect: allowed by report mode to the addresses answered for this name"));
            Assert.That(output, Does.Contain("(egress enabled, report mode: denials are only logged, 1 destination)"));
        });
    }

    [Test]
    public void TheMetadataAddressStaysDenied()
    {
        (int code, string output) = Check("169.254.169.254:80");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(1));
            Assert.That(output, Does.Contain("connect: denied: internal range link-local 169.254.0.0/16 (instance metadata); report mode does not relax internal addresses"));
        });
    }

    [Test]
    public void AnotherPortOfAListedNameIsAllowedByReportModeInTheHostsWords()
    {
        (int code, string output) = Check("api.example.com:22");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Does.Contain("connect: allowed by report mode; enforce would deny: port not allowed by \"api.example.com:443\""));
            Assert.That(output, Does.Not.Contain("connect: denied"));
        });
    }

    private static (int Code, string Output) Check(string target)
    {
        var configuration = EgressConfiguration.Parse(Report, "enclave.toml");
        Assert.That(CheckTarget.TryParse(target, out CheckTarget? parsed, out string? error), Is.True, error);
        var output = new StringWriter();
        int code = new CheckCommand(configuration, configuration.CreatePolicy(configuration.CreateCache()), output).Run(parsed!);
        return (code, output.ToString());
    }
}
