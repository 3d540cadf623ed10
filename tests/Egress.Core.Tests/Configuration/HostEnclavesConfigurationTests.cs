using Egress.Configuration;

namespace Egress.Tests.Configuration;

/// <summary><c>[[host.enclaves]]</c>: read with each entry's CID and resolved path, and every mistake located.</summary>
public sealed class HostEnclavesConfigurationTests
{
    [Test]
    public void EntriesAreReadInOrderWithPathsRelativeToTheFile()
    {
        const string Text = """
            [host]
            connect_timeout_ms = 1000

            [[host.enclaves]]
            cid = 16
            config = "enclave-a.toml"

            [dns]
            grace_seconds = 1

            [[host.enclaves]]
            cid = "any"
            config = "/etc/egress/other.toml"
            """;

        var configuration = EgressConfiguration.Parse(Text, "/etc/egress/enclave.toml");

        Assert.Multiple(() =>
        {
            Assert.That(configuration.Host.Enclaves.Select(entry => (entry.Cid, entry.ConfigPath, entry.ToString())), Is.EqualTo(new (uint?, string, string)[]
            {
                (16u, "/etc/egress/enclave-a.toml", "16"),
                (null, "/etc/egress/other.toml", "any"),
            }));
            Assert.That(configuration.Host.ConnectTimeout, Is.EqualTo(TimeSpan.FromSeconds(1)));
            Assert.That(configuration.Dns.Grace, Is.EqualTo(TimeSpan.FromSeconds(1)));
        });
    }

    [Test]
    public void WithoutTheKeyThereAreNoEntries() =>
        Assert.That(EgressConfiguration.Parse("[host]\n", "enclave.toml").Host.Enclaves, Is.Empty);

    [Test]
    public void InlineTablesAreEntriesToo()
    {
        var configuration = EgressConfiguration.Parse("[host]\nenclaves = [{ cid = 1, config = \"a.toml\" }]\n", "enclave.toml");

        Assert.That(configuration.Host.Enclaves.Select(entry => (entry.Cid, entry.ConfigPath)), Is.EqualTo(new (uint?, string)[] { (1u, "a.toml") }));
    }

    [TestCase("[[host.enclaves]]\ncid = 16\nconfig = \"a.toml\"\n[[host.enclaves]]\ncid = 16\nconfig = \"b.toml\"\n", "enclave.toml:5:1: error: CID 16 is mapped twice (first at enclave.toml:2:1) (key 'host.enclaves')", TestName = "A CID mapped twice")]
    [TestCase("[[host.enclaves]]\ncid = \"any\"\nconfig = \"a.toml\"\n[[host.enclaves]]\ncid = \"any\"\nconfig = \"b.toml\"\n", "enclave.toml:5:1: error: \"any\" is mapped twice (first at enclave.toml:2:1) (key 'host.enclaves')", TestName = "Any mapped twice")]
    [TestCase("[[host.enclaves]]\ncid = 16\n", "enclave.toml:2:1: error: each [[host.enclaves]] needs cid (the enclave's CID, or \"any\") and config (its enclave.toml); this one has no config (key 'host.enclaves')", TestName = "No config")]
    [TestCase("[[host.enclaves]]\ncid = \"all\"\nconfig = \"a.toml\"\n", "enclave.toml:2:7: error: expected the enclave's CID (an integer, e.g. 16) or \"any\", found \"all\" (key 'host.enclaves.cid')", TestName = "A CID that is neither a number nor any")]
    [TestCase("[[host.enclaves]]\ncid = 4294967295\nconfig = \"a.toml\"\n", "enclave.toml:2:7: error: must be between 4 and 4294967294 (or 1, VMADDR_CID_LOCAL, for a test on one machine), or \"any\", found 4294967295 (key 'host.enclaves.cid')", TestName = "VMADDR_CID_ANY as a CID")]
    [TestCase("[[host.enclaves]]\ncid = 3\nconfig = \"a.toml\"\n", "enclave.toml:2:7: error: CID 3 is the parent instance's own CID on Nitro, never an enclave's; enclaves have CID 4 or above (the CID given to nitro-cli run-enclave --enclave-cid, or the one it printed) (key 'host.enclaves.cid')", TestName = "The parent's own CID")]
    [TestCase("[[host.enclaves]]\ncid = 2\nconfig = \"a.toml\"\n", "enclave.toml:2:7: error: CID 2 is the host (VMADDR_CID_HOST), never an enclave; enclaves have CID 4 or above (the CID given to nitro-cli run-enclave --enclave-cid, or the one it printed) (key 'host.enclaves.cid')", TestName = "The host's CID")]
    [TestCase("[[host.enclaves]]\ncid = 0\nconfig = \"a.toml\"\n", "enclave.toml:2:7: error: CID 0 is the hypervisor (VMADDR_CID_HYPERVISOR), never an enclave; enclaves have CID 4 or above (the CID given to nitro-cli run-enclave --enclave-cid, or the one it printed) (key 'host.enclaves.cid')", TestName = "The hypervisor's CID")]
    [TestCase("[[host.enclaves]]\ncid = -1\nconfig = \"a.toml\"\n", "enclave.toml:2:7: error: must be between 4 and 4294967294 (or 1, VMADDR_CID_LOCAL, for a test on one machine), or \"any\", found -1 (key 'host.enclaves.cid')", TestName = "A negative CID")]
    [TestCase("[[host.enclaves]]\ncid = 16\nconfg = \"a.toml\"\n", "enclave.toml:3:1: error: unknown key; did you mean 'config'? (key 'host.enclaves.confg')", TestName = "A misspelt key")]
    [TestCase("[host]\nenclaves = 16\n", "enclave.toml:2:12: error: expected an array of tables ([[host.enclaves]] with cid and config), found an integer (key 'host.enclaves')", TestName = "Not an array of tables")]
    public void MistakesAreLocated(string text, string expected)
    {
        var error = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse(text, "enclave.toml"));

        Assert.That(error!.Message, Is.EqualTo(expected));
    }
}
