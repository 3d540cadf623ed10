using Egress.Configuration;
using Egress.Enclave.Check;

namespace Egress.Tests.Enclave;

/// <summary><c>egress-enclave check</c> on an address no entry lists: whether it can be allowed at run time depends on
/// whether any entry names a host whose DNS answers could teach it.</summary>
public sealed class CheckCommandTests
{
    // Before, an empty list said the address would be allowed once learned, which can never happen.
    [TestCase("[egress]\nenabled = true\ndestinations = []\n")]
    [TestCase("[egress]\nenabled = true\ndestinations = [\"198.51.100.0/24\", \"203.0.113.7:443\"]\n")]
    public void WithoutANameEntryAnUnlistedAddressStaysDenied(string file)
    {
        (int code, string output) = Check(file, "192.0.2.9:443");

        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Does.Contain("connect: denied: never learned from an allowed name"));
        Assert.That(output, Does.Contain("no entry names a host (or a wildcard), so no DNS answer is learned: it stays denied at run time"));
        Assert.That(output, Does.Not.Contain("at run time it is allowed"));
    }

    [TestCase("[egress]\nenabled = true\ndestinations = [\"api.example.com\"]\n")]
    [TestCase("[egress]\nenabled = true\ndestinations = [\"*.example.com:443\"]\n")]
    public void WithANameEntryAnUnlistedAddressMayBeLearned(string file)
    {
        (int code, string output) = Check(file, "192.0.2.9:443");

        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Does.Contain("at run time it is allowed while the DNS forwarder has learned it from an answer for an allowed name"));
    }

    // A new user's trial: with "api.stripe.com:443" only, port 22 of an unlisted address was said to be allowed once
    // learned, which no learning can make true; so with egress.ports = ["443"] for port 25.
    [TestCase("[egress]\nenabled = true\ndestinations = [\"api.stripe.com:443\", \"198.51.100.0/24:22\"]\n", "192.0.2.9:22")]
    [TestCase("uuid = \"x\"\n[egress]\nenabled = true\nports = [\"443\"]\ndestinations = [\"api.stripe.com\"]\n", "192.0.2.9:25")]
    public void APortNoNameEntryAllowsStaysDeniedWhateverIsLearned(string file, string target)
    {
        (int code, string output) = Check(file, target);

        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Does.Contain($"no entry for a host (or a wildcard) allows port {target.Split(':')[1]}, so no learned address is allowed on it: it stays denied at run time"));
        Assert.That(output, Does.Not.Contain("at run time it is allowed").And.Not.Contain("tls:"));
    }

    // A review: in report mode the address is allowed at run time (a would-deny), not "denied".
    [Test]
    public void InReportModeAPortNoNameEntryAllowsIsAWouldDeny()
    {
        (int code, string output) = Check("[egress]\nenabled = true\nmode = \"report\"\ndestinations = [\"api.stripe.com:443\"]\n", "192.0.2.9:22");

        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("no entry for a host (or a wildcard) allows port 22, so no learned address is allowed on it: enforce mode denies it at run time whatever is learned (report mode allows it, logged as a would-deny)"));
        Assert.That(output, Does.Not.Contain("it stays denied"));
    }

    // A new user's trial: check answered "allowed" from this file's [egress] with no word that egress-host decides an
    // enclave's streams by its [[host.enclaves]] entry's file.
    [Test]
    public void AFileWithHostEnclavesSaysWhichFileTheParentDecidesBy()
    {
        const string Policy = "[egress]\nenabled = true\ndestinations = [\"198.18.0.10\"]\n";

        (int code, string output) = Check(Policy + "[[host.enclaves]]\ncid = 16\nconfig = \"a.toml\"\n", "198.18.0.10");
        (_, string without) = Check(Policy, "198.18.0.10");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Does.Contain("note:    this file has 1 [[host.enclaves]] entry: egress-host decides each enclave's streams by its entry's file"));
            Assert.That(without, Does.Not.Contain("[[host.enclaves]]"));
        });
    }

    // A new user's trial: "check api.stripe.com" with the entry "api.stripe.com:443" said "allowed to the addresses
    // answered for this name" without the port it is limited to.
    [TestCase("[egress]\nenabled = true\ndestinations = [\"api.stripe.com:443\"]\n", " only on the ports of \"api.stripe.com:443\" to the addresses")]
    [TestCase("[egress]\nenabled = true\ndestinations = [\"api.stripe.com:443\", \"api.stripe.com:8443\"]\n", " only on the ports of \"api.stripe.com:443\", \"api.stripe.com:8443\" to the addresses")]
    [TestCase("[egress]\nenabled = true\ndestinations = [\"*.stripe.com:443\"]\n", " only on the ports of \"*.stripe.com:443\" to the addresses")]
    [TestCase("[egress]\nenabled = true\ndestinations = [\"api.stripe.com:443\", \"api.stripe.com\"]\n", " to the addresses")]
    public void ANameWithoutAPortSaysThePortsItsEntriesLimitItTo(string file, string said)
    {
        (int code, string output) = Check(file, "api.stripe.com");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Does.Contain("connect: allowed" + said + " answered for this name"), output);
        });
    }

    // The DNS trial: "check 2001:db8::1" against "2001:db8::/32:443" said "allowed: static entry" without the port, and
    // "check NAME:443" against "*:443" said "by \"*\"", dropping the port.
    [TestCase("[\"2001:db8::/32:443\"]", "2001:db8::1", "connect: allowed: static entry \"2001:db8::/32:443\"\n         only on the ports of \"2001:db8::/32:443\" (and those of a name it is learned from at run time); give ADDRESS:PORT")]
    [TestCase("[\"*:443\"]", "198.51.100.1", "connect: allowed: allow-all entry \"*:443\"\n         only on the ports of \"*:443\" (and those of a name it is learned from at run time); give ADDRESS:PORT")]
    [TestCase("[\"198.51.100.0/24:443\", \"198.51.100.1\"]", "198.51.100.1", "connect: allowed: static entry \"198.51.100.1\"\ntls:")]
    [TestCase("[\"*:443\"]", "anything.example:443", "connect: allowed on port 443 by \"*:443\" (the allow-all entry, as each connection is logged)")]
    public void AnAllowedTargetSaysThePortsItsEntriesLimitItTo(string destinations, string target, string said)
    {
        (int code, string output) = Check($"[egress]\nenabled = true\ndestinations = {destinations}\n", target);

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output.ReplaceLineEndings("\n"), Does.Contain(said), output);
        });
    }

    // A new user's trial: 198.18.0.10:8080 was said denied by "198.18.0.10:7,5432,25", and a connection to it was
    // allowed at run time: the address was also learned from a name allowed on 8080 (docs/threat-model.md).
    private const string SharedAddress = "[egress]\nenabled = true\ndestinations = [\"198.18.0.10:7,5432,25\", \"10.0.0.5:7\", \"www.allowed.test:8080\", \"secure.allowed.test:443\", \"*.web.test:80\"]\n";

    [Test]
    public void AnAddressDeniedOnItsPortSaysANameAllowedOnThePortMayAllowItAtRunTime()
    {
        (int code, string output) = Check(SharedAddress, "198.18.0.10:8080");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(1));
            Assert.That(output.ReplaceLineEndings("\n"), Does.Contain("connect: denied: port not allowed by \"198.18.0.10:7,5432,25\"\n"
                + "         but at run time it is allowed on port 8080 while the DNS forwarder has learned it from an answer for a name allowed on that port (\"www.allowed.test:8080\"): an address learned from an allowed name is allowed on that name's ports, whatever other entry names the address\n"
                + "tls:     through a learned address: "), output);
        });
    }

    // No name entry allows port 9; an internal address is decided by its entries alone (nothing learned adds a port).
    [TestCase("198.18.0.10:9")]
    [TestCase("10.0.0.5:80")]
    public void AnAddressDeniedOnAPortNoLearnedNameCanAddHasNoSuchCaveat(string target)
    {
        (int code, string output) = Check(SharedAddress, target);

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(1));
            Assert.That(output, Does.Contain("connect: denied: port not allowed by").And.Not.Contains("at run time it is allowed"));
        });
    }

    [Test]
    public void ANameDeniedOnItsPortSaysAnotherNameAllowedOnThePortMayAllowItsAddressAtRunTime()
    {
        (int code, string output) = Check(SharedAddress, "secure.allowed.test:80");
        (_, string noOtherName) = Check(SharedAddress, "secure.allowed.test:22");
        (_, string reportMode) = Check(SharedAddress.Replace("enabled = true\n", "enabled = true\nmode = \"report\"\n", StringComparison.Ordinal), "secure.allowed.test:80");

        const string Caveat = "         but a connection on port 80 to one of its addresses is allowed at run time when the DNS forwarder has also learned that address from an answer for another name allowed on port 80 (\"*.web.test:80\"): an address shared by two names is allowed on the ports of both\n";
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(1));
            Assert.That(output.ReplaceLineEndings("\n"), Does.Contain("connect: denied on port 80: port not allowed by \"secure.allowed.test:443\" (the entry this name is allowed through)\n" + Caveat), output);
            Assert.That(reportMode.ReplaceLineEndings("\n"), Does.Contain(Caveat), reportMode);
            Assert.That(noOtherName, Does.Contain("connect: denied on port 22").And.Not.Contains("allowed at run time"));
        });
    }

    [Test]
    public void AnIPv6AddressThatEndsLikeAPortIsCheckedAsAnAddressWithANoteFirst()
    {
        (int code, string output) = Check("[egress]\nenabled = true\ndestinations = [\"2001:db8::1:443\"]\n", "2001:db8::1:443");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Does.StartWith("note:    '2001:db8::1:443' is read as the IPv6 address 2001:db8::1:443, with no port"), output);
        });
    }

    private static (int Code, string Output) Check(string file, string target)
    {
        var configuration = EgressConfiguration.Parse(file, "enclave.toml");
        Assert.That(CheckTarget.TryParse(target, out CheckTarget? parsed, out string? error), Is.True, error);
        var output = new StringWriter();
        int code = new CheckCommand(configuration, configuration.CreatePolicy(configuration.CreateCache()), output).Run(parsed!);
        return (code, output.ToString());
    }
}
