using System.Globalization;
using System.Net;
using Egress.Configuration;
using Egress.Enclave.Check;
using Egress.Policy;
using Egress.Tls;

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

    /// <summary>From an operator's trial: under <c>destinations = ["*"]</c>, <c>check other.example.com:443</c> stated the
    /// require rule, while the proxy relays a connection allowed by <c>*</c> whatever its ClientHello names.</summary>
    [Test]
    public void ANameAllowedOnlyThroughAllowAllIsSaidNotToBeChecked()
    {
        (int code, string output) = Check("destinations = [\"*\"]", "other.example.com:443");
        (_, string anyPort) = Check("destinations = [\"*\"]", "other.example.com");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Does.Contain("tls:     not checked on port 443: connections allowed by \"*\" are relayed whatever their ClientHello names"));
            Assert.That(output, Does.Contain("connect: allowed on port 443 by \"*\""));
            Assert.That(output, Does.Not.Contain("must name"));
            Assert.That(anyPort, Does.Contain("tls:     not checked: connections allowed by \"*\""));
        });
    }

    [Test]
    public void ANameWithItsOwnEntryIsCheckedOnlyOnThePortsAllowAllDoesNotAllow()
    {
        (_, string output) = Check("destinations = [\"*:443\", \"api.example.com\"]", "api.example.com");

        Assert.That(output, Does.Contain("tls:     on the ports of \"*:443\", not checked: connections allowed by \"*\""));
        Assert.That(output, Does.Contain("; on other ports: a TLS ClientHello must name api.example.com"));
    }

    /// <summary>
    /// What <c>check NAME:PORT</c> says about the server-name check is what the proxy does: the target's name is
    /// learned at a public address, the connection decided as at run time, and <see cref="ServerNameGate.For"/> makes
    /// a gate exactly when check does not say "not checked".
    /// </summary>
    [TestCase("\"*\"", "other.example.com", 443, "enforce")]
    [TestCase("\"*\", \"api.example.com\"", "api.example.com", 443, "enforce")]
    [TestCase("\"*\", \"api.example.com:443\"", "api.example.com", 8443, "enforce")]
    [TestCase("\"*:443\", \"api.example.com\"", "api.example.com", 443, "enforce")]
    [TestCase("\"*:443\", \"api.example.com\"", "api.example.com", 8443, "enforce")]
    [TestCase("\"api.example.com\"", "api.example.com", 443, "enforce")]
    [TestCase("\"*.example.com:443\"", "api.example.com", 443, "enforce")]
    [TestCase("\"api.example.com:443\"", "api.example.com", 443, "report")]
    [TestCase("\"api.example.com:443\"", "api.example.com", 8443, "report")]
    [TestCase("\"api.example.com:443\"", "other.example.com", 443, "report")]
    public void CheckSaysWhatTheProxysGateDoes(string destinations, string name, int port, string mode)
    {
        var configuration = EgressConfiguration.Parse($"[egress]\nenabled = true\nmode = \"{mode}\"\ndestinations = [{destinations}]\n", "enclave.toml");
        var policy = configuration.CreatePolicy(configuration.CreateCache());
        Assert.That(CheckTarget.TryParse(string.Create(CultureInfo.InvariantCulture, $"{name}:{port}"), out CheckTarget? target, out string? error), Is.True, error);
        var output = new StringWriter();
        new CheckCommand(configuration, policy, output).Run(target!);
        var address = IPAddress.Parse("198.51.100.7");
        policy.Learn(name, address, TimeSpan.FromMinutes(5));

        var destination = new IPEndPoint(address, port);
        PolicyDecision decision = policy.CheckDestination(destination);
        ServerNameGate? gate = ServerNameGate.For(policy, destination, decision);

        Assert.That(decision.IsAllowed, Is.True, decision.ToString());
        Assert.That(output.ToString(), gate is null ? Does.Contain("tls:     not checked")
            : decision.WouldDeny ? Does.Contain("tls:     reported, not refused") // read and reported only: a would-deny
            : Does.Contain("tls:     a TLS ClientHello must name " + name));
        Assert.That(gate is null || gate.ReportOnly == (mode == "report"), Is.True, "only report mode's gates report");
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
