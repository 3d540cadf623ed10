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
}
