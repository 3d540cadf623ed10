using System.Security.Cryptography;
using System.Text;
using Egress.Configuration;

namespace Egress.Tests.Configuration;

/// <summary>
/// The policy digest both hosts log: read from enclave.toml text through the real reader, it stays the same for what
/// does not decide allow or deny and changes for what does.
/// </summary>
public sealed class PolicyDigestTests
{
    private const string EnclaveFile = """
        # the enclave's file
        [egress]
        enabled = true
        destinations = ["api.example.com", "*.example.org", "198.18.0.0/15", "2001:db8::/32", "10.0.0.5"]

        [tunnel]
        enclave_endpoint = "vsock://3:4433"

        [dns]
        ttl_floor_seconds = 30
        grace_seconds = 60
        """;

    /// <summary>
    /// <see cref="EnclaveFile"/> with other comments and whitespace, the sections and keys in another order, the entries in
    /// another order, case and with a trailing dot or a duplicate, the [dns] defaults written out or left out, and
    /// every per-side setting changed: the same policy.
    /// </summary>
    private const string SamePolicyWrittenDifferently = """
        [host]
        connect_timeout_ms = 3000
        dns_upstreams = ["10.0.0.2"]
        max_streams = 100
        metrics_listen = "127.0.0.1:9464"

        [dns]
        grace_seconds   =   60      # the parent's copy
        cache_max_entries = 65536

        [egress]
        destinations = [
            "10.0.0.5",
            "2001:DB8::/32",
            "API.example.com.",
            "*.Example.org",
            "198.18.0.0/15",
            "api.example.com",
        ]
        enabled = true

        [tunnel]
        host_endpoint = "vsock://any:4433"
        status_timeout_ms = 9000

        [enclave]
        proxy_listen = ["127.0.0.1:5555"]
        dns_listen = ["127.0.0.1:5353"]

        [relay]
        idle_timeout_seconds = 0
        splice = false
        shutdown_drain_seconds = 1
        """;

    [Test]
    public void TheSameFileGivesTheSameDigest()
    {
        PolicyDigest enclave = Digest(EnclaveFile, "/etc/egress/enclave.toml");
        PolicyDigest parent = Digest(EnclaveFile, "enclave.toml");

        Assert.That(parent.Hash, Is.EqualTo(enclave.Hash));
    }

    [Test]
    public void CommentsWhitespaceOrderAndPerSideSettingsDoNotChangeTheDigest()
    {
        PolicyDigest original = Digest(EnclaveFile);
        PolicyDigest rewritten = Digest(SamePolicyWrittenDifferently);

        Assert.Multiple(() =>
        {
            Assert.That(rewritten.Hash, Is.EqualTo(original.Hash));
            Assert.That(rewritten.DestinationCount, Is.EqualTo(5), "duplicates in canonical form count once");
        });
    }

    [TestCase("\"api.example.com\"", "\"api.example.net\"", TestName = "A changed name")]
    [TestCase("\"*.example.org\"", "\"example.org\"", TestName = "A wildcard that became the apex")]
    [TestCase("\"198.18.0.0/15\"", "\"198.18.0.0/16\"", TestName = "A narrower network")]
    [TestCase("\"10.0.0.5\"", "\"10.0.0.6\"", TestName = "Another address")]
    [TestCase(", \"10.0.0.5\"", "", TestName = "A removed entry")]
    [TestCase("\"10.0.0.5\"", "\"10.0.0.5\", \"169.254.169.254\"", TestName = "An added internal-range entry")]
    [TestCase("enabled = true", "enabled = false", TestName = "Egress disabled")]
    [TestCase("enabled = true", "enabled = true\ntls_server_name = \"if-present\"", TestName = "Server names checked only when present")]
    [TestCase("enabled = true", "enabled = true\ntls_server_name = \"off\"", TestName = "Server names not checked")]
    [TestCase("ttl_floor_seconds = 30", "ttl_floor_seconds = 31", TestName = "Another TTL floor")]
    [TestCase("grace_seconds = 60", "grace_seconds = 0", TestName = "Another grace")]
    [TestCase("grace_seconds = 60", "grace_seconds = 60\ncache_max_entries = 1000", TestName = "Another cache bound")]
    public void WhatDecidesAllowOrDenyChangesTheDigest(string before, string after)
    {
        Assert.That(EnclaveFile.Contains(before, StringComparison.Ordinal), Is.True, $"the file has no {before}");
        string changed = EnclaveFile.Replace(before, after, StringComparison.Ordinal);

        Assert.That(Digest(changed).Hash, Is.Not.EqualTo(Digest(EnclaveFile).Hash), changed);
    }

    [Test]
    public void TheDigestIsTheSha256OfTheCanonicalText()
    {
        const string Expected = """
            egress-policy v2
            egress.enabled = true
            egress.destination = *.example.org
            egress.destination = 10.0.0.5
            egress.destination = 198.18.0.0/15
            egress.destination = 2001:db8::/32
            egress.destination = api.example.com
            egress.tls_server_name = require
            dns.ttl_floor_seconds = 30
            dns.grace_seconds = 60
            dns.cache_max_entries = 65536

            """;
        var configuration = EgressConfiguration.Parse(EnclaveFile, "enclave.toml");
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Expected)));

        string text = PolicyDigest.CanonicalText(configuration, out int count);
        PolicyDigest digest = configuration.GetPolicyDigest();

        Assert.Multiple(() =>
        {
            Assert.That(text, Is.EqualTo(Expected));
            Assert.That(count, Is.EqualTo(5));
            Assert.That(digest.Hash, Is.EqualTo(hash));
            Assert.That(digest.ToString(), Is.EqualTo("sha256:" + hash[..12]));
            Assert.That((digest.EgressEnabled, digest.DestinationCount), Is.EqualTo((true, 5)));
        });
    }

    [Test]
    public void TheDefaultsAreDisabledWithNoDestinations()
    {
        PolicyDigest digest = EgressConfiguration.Default.GetPolicyDigest();

        Assert.Multiple(() =>
        {
            Assert.That((digest.EgressEnabled, digest.DestinationCount), Is.EqualTo((false, 0)));
            Assert.That(digest.Hash, Is.EqualTo(Digest(string.Empty).Hash));
            Assert.That(digest.Hash, Is.Not.EqualTo(Digest("[egress]\nenabled = true\n").Hash));
        });
    }

    [Test]
    public void TheSampleFileAndItsCommentFreeCopyHaveTheSameDigest()
    {
        string path = Path.Combine(TestContext.CurrentContext.TestDirectory, "..", "..", "..", "..", "..", "samples", "enclave.toml");
        string withoutComments = string.Join('\n', File.ReadAllLines(path).Select(line => line.Split('#')[0].TrimEnd()).Where(line => line.Length > 0));

        PolicyDigest sample = EgressConfiguration.Load(path).GetPolicyDigest();
        PolicyDigest copy = Digest(withoutComments);
        PolicyDigest edited = Digest(withoutComments.Replace("\"198.18.0.10\"", "\"198.18.0.11\"", StringComparison.Ordinal));

        Assert.Multiple(() =>
        {
            Assert.That(copy.Hash, Is.EqualTo(sample.Hash));
            Assert.That(edited.Hash, Is.Not.EqualTo(sample.Hash));
            Assert.That(sample.DestinationCount, Is.EqualTo(4));
        });
    }

    [Test]
    public void AnInvalidDestinationIsReportedAtItsArrayElement()
    {
        var configuration = EgressConfiguration.Parse("[egress]\ndestinations = [\n  \"api.example.com\",\n  \"a.*.com\",\n]\n", "enclave.toml");

        var error = Assert.Throws<ConfigurationException>(() => configuration.GetPolicyDigest());

        Assert.That((error!.Line, error.Column, error.Key), Is.EqualTo((4, 3, "egress.destinations")));
    }

    private static PolicyDigest Digest(string text, string source = "enclave.toml") =>
        EgressConfiguration.Parse(text, source).GetPolicyDigest();
}
