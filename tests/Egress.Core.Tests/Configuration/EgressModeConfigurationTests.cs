using Egress.Configuration;
using Egress.Policy;

namespace Egress.Tests.Configuration;

/// <summary><c>egress.mode</c>: read, located when wrong, handed to the policy, and in the digest only when it reports.</summary>
public sealed class EgressModeConfigurationTests
{
    private const string Enforcing = """
        [egress]
        enabled = true
        destinations = ["api.example.com"]
        """;

    [Test]
    public void TheModeIsEnforceByDefaultAndReportWhenSet()
    {
        var byDefault = EgressConfiguration.Parse(Enforcing, "enclave.toml");
        var reporting = EgressConfiguration.Parse(Enforcing + "\nmode = \"report\"\n", "enclave.toml");

        Assert.Multiple(() =>
        {
            Assert.That(byDefault.Egress.Mode, Is.EqualTo(EgressMode.Enforce));
            Assert.That(reporting.Egress.Mode, Is.EqualTo(EgressMode.Report));
            Assert.That(reporting.CreatePolicy(reporting.CreateCache()).Mode, Is.EqualTo(EgressMode.Report));
            Assert.That(reporting.GetPolicyDigest().Mode, Is.EqualTo(EgressMode.Report));
        });
    }

    [Test]
    public void AnUnknownModeIsAnErrorAtItsValue()
    {
        var error = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse(Enforcing + "\nmode = \"audit\"\n", "enclave.toml"));

        Assert.That(error!.Message, Is.EqualTo(
            "enclave.toml:4:8: error: expected \"enforce\" (deny what the list does not allow) or \"report\" (allow it and log each would-deny), found \"audit\" (key 'egress.mode')"));
    }

    [Test]
    public void ReportModeChangesTheDigestAndAnExplicitEnforceDoesNot()
    {
        string plain = EgressConfiguration.Parse(Enforcing, "enclave.toml").GetPolicyDigest().Hash;
        string enforce = EgressConfiguration.Parse(Enforcing + "\nmode = \"enforce\"\n", "enclave.toml").GetPolicyDigest().Hash;
        var reporting = EgressConfiguration.Parse(Enforcing + "\nmode = \"report\"\n", "enclave.toml");

        Assert.Multiple(() =>
        {
            Assert.That(enforce, Is.EqualTo(plain), "files written before the key existed keep their digest");
            Assert.That(reporting.GetPolicyDigest().Hash, Is.Not.EqualTo(plain), "an enclave that reports and a parent that enforces must differ");
            Assert.That(PolicyDigest.CanonicalText(reporting, out _), Does.Contain("\negress.mode = report\n"));
        });
    }
}
