using Egress.Configuration;
using Egress.Enclave.Check;

namespace Egress.Tests.Enclave;

/// <summary><c>egress-enclave check</c> states the TLS server-name rule (<c>egress.tls_server_name</c>) that applies to a target.</summary>
public sealed class CheckServerNameTests
{
    [Test]
    public void AnAllowedNameGetsTheRequireRuleByDefault()
    {
        (int code, string output) = Check("destinations = [\"api.example.com:443\"]", "api.example.com:443");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Does.Contain("tls:     a TLS ClientHello must name api.example.com (or another allowed name the same address was learned from), allowed on the connection's port; one without a server name"));
            Assert.That(output, Does.Contain("(egress.tls_server_name = \"require\")"));
        });
    }

    [TestCase("if-present", "a TLS ClientHello that carries a server name must name api.example.com")]
    [TestCase("off", "not checked: the first client bytes are relayed unread (egress.tls_server_name = \"off\")")]
    public void TheConfiguredModeIsTheOneStated(string mode, string expected)
    {
        (_, string output) = Check($"destinations = [\"api.example.com\"]\ntls_server_name = \"{mode}\"", "api.example.com");

        Assert.That(output, Does.Contain("tls:     " + expected));
    }

    [Test]
    public void ADeniedNameHasNoServerNameLine()
    {
        (int code, string output) = Check("destinations = [\"api.example.com\"]", "evil.example.net:443");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(1));
            Assert.That(output, Does.Not.Contain("tls:"));
        });
    }

    [Test]
    public void AnAddressEntryIsSaidNotToBeChecked()
    {
        (int code, string output) = Check("destinations = [\"198.18.0.10\"]", "198.18.0.10:443");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Does.Contain("tls:     not checked: connections allowed by an address or network entry"));
        });
    }

    [Test]
    public void AnAddressThatMustBeLearnedGetsTheRuleForLearnedAddresses()
    {
        (_, string output) = Check("destinations = [\"api.example.com\"]", "198.18.0.10:443");

        Assert.That(output, Does.Contain("tls:     through a learned address: a TLS ClientHello must name a name the address was learned from"));
    }

    [Test]
    public void ReportModeSaysARefusalIsOnlyLogged()
    {
        (_, string output) = Check("mode = \"report\"\ndestinations = [\"api.example.com\"]", "api.example.com:443");

        Assert.That(output, Does.Contain("; in report mode a refusal is only logged (would-refuse)"));
    }

    private static (int Code, string Output) Check(string egress, string target)
    {
        var configuration = EgressConfiguration.Parse("[egress]\nenabled = true\n" + egress + "\n", "enclave.toml");
        Assert.That(CheckTarget.TryParse(target, out CheckTarget? parsed, out string? error), Is.True, error);
        var output = new StringWriter();
        int code = new CheckCommand(configuration, configuration.CreatePolicy(configuration.CreateCache()), output).Run(parsed!);
        return (code, output.ToString());
    }
}
