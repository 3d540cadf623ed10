using Egress.Configuration;

namespace Egress.Tests.Configuration;

public sealed class AuditLogConfigurationTests
{
    [Test]
    public void StdoutAndAbsolutePathsAreRead()
    {
        var configuration = EgressConfiguration.Parse("[enclave]\naudit_log = \"stdout\"\n[host]\naudit_log = \"/var/log/egress/audit.jsonl\"\n", "enclave.toml");
        Assert.That((configuration.Enclave.AuditLog, configuration.Host.AuditLog), Is.EqualTo(("stdout", "/var/log/egress/audit.jsonl")));
    }

    [Test]
    public void NoneByDefault()
    {
        var configuration = EgressConfiguration.Parse(string.Empty, "enclave.toml");
        Assert.That((configuration.Enclave.AuditLog, configuration.Host.AuditLog), Is.EqualTo(((string?)null, (string?)null)));
    }

    [TestCase("audit.jsonl")]
    [TestCase("./audit.jsonl")]
    [TestCase("/var/log/egress/")]
    [TestCase("")]
    public void ARelativePathOrAFolderIsAnErrorAtItsPlace(string value)
    {
        var error = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse($"[host]\naudit_log = \"{value}\"\n", "enclave.toml"));
        Assert.That(error!.Message, Does.StartWith("enclave.toml:2:").And.Contain("expected \"stdout\" or an absolute file path"));
    }
}
