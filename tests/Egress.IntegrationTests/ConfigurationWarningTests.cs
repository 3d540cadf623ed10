using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>What the hosts say about a valid configuration that probably does not mean what it allows.</summary>
[TestFixture]
public sealed class ConfigurationWarningTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Test]
    public async Task ABroadNetworkEntryIsAllowedAndWarnedAboutWithItsLocation()
    {
        string path = Path.Combine(Path.GetTempPath(), $"egress-warning-{Guid.NewGuid():N}.toml");
        await File.WriteAllTextAsync(path, "[egress]\nenabled = true\ndestinations = [\"api.example.com\", \"0.0.0.0/1\"]\n");
        try
        {
            var check = await Command.RunAsync(HostBinaries.Enclave("check", "10.1.2.3", "--config", path), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(check.ExitCode, Is.Zero, check.ToString);
                Assert.That(check.StandardOutput, Does.Contain("connect: allowed: static entry \"0.0.0.0/1\""), check.ToString);
                Assert.That(
                    check.StandardError,
                    Does.Contain($"{path}:3:36: warning: destination \"0.0.0.0/1\" also allows internal ranges it does not name: loopback 127.0.0.0/8, unspecified 0.0.0.0/8, private 10.0.0.0/8, shared CGNAT 100.64.0.0/10;"),
                    check.ToString);
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestCase("vsock://any:4433", 2, "the enclave dials this endpoint, and \"any\" is only for listening")]
    [TestCase("unix:relative.sock", 2, "invalid tunnel endpoint 'unix:relative.sock'")]
    [TestCase("vsock://3:4433", 0, "tunnel:  vsock://3:4433 (tunnel.enclave_endpoint")]
    public async Task CheckRejectsAnEnclaveEndpointThatRunWouldReject(string endpoint, int exitCode, string said)
    {
        // A new user's trial: check passed a file whose tunnel endpoint `run` then refused.
        string path = Path.Combine(Path.GetTempPath(), $"egress-endpoint-{Guid.NewGuid():N}.toml");
        await File.WriteAllTextAsync(path, $"[egress]\nenabled = true\ndestinations = [\"10.1.2.3\"]\n\n[tunnel]\nenclave_endpoint = \"{endpoint}\"\n");
        try
        {
            var check = await Command.RunAsync(HostBinaries.Enclave("check", "10.1.2.3", "--config", path), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(check.ExitCode, Is.EqualTo(exitCode), check.ToString);
                Assert.That(check.StandardOutput + check.StandardError, Does.Contain(said), check.ToString);
            });
        }
        finally
        {
            File.Delete(path);
        }
    }
}
