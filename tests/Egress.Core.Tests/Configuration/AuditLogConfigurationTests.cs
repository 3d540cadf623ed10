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
    [TestCase("")]
    public void ARelativePathIsAnErrorAtItsPlace(string value)
    {
        var error = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse($"[host]\naudit_log = \"{value}\"\n", "enclave.toml"));
        Assert.That(error!.Message, Does.StartWith("enclave.toml:2:").And.Contain("expected \"stdout\" or an absolute file path"));
    }

    /// <summary>A directory said "expected ... an absolute file path, found \"/var/log/egress/\"": an absolute path, so the
    /// message seemed to contradict itself.</summary>
    [Test]
    public void ADirectoryIsAnErrorThatSaysItIsOne()
    {
        var error = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse("[host]\naudit_log = \"/var/log/egress/\"\n", "enclave.toml"));
        Assert.That(error!.Message, Is.EqualTo(
            "enclave.toml:2:13: error: expected a file path, found the directory \"/var/log/egress/\" (a file in it, e.g. \"/var/log/egress/audit.jsonl\") (key 'host.audit_log')"));
    }
}
