using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>After the whole suite: no namespace, process, /etc/netns directory or root-namespace redirect rule of ours is left.</summary>
[SetUpFixture]
public sealed class SuiteLeftoversCheck
{
    [OneTimeTearDown]
    public async Task NothingIsLeftBehind()
    {
        if (!Root.IsRoot)
        {
            return;
        }

        var listed = await ResourceLedger.ListNamespacesAsync();
        var leftoverNamespaces = ResourceLedger.CreatedNamespaces.Where(listed.Contains).ToList();
        var runningProcesses = ResourceLedger.StartedProcesses.Where(process => !process.HasExited).ToList();
        var leftoverEtcDirectories = ResourceLedger.CreatedEtcDirectories.Where(Directory.Exists).ToList();

        // Clean up first so a failing check does not leak into the next run, then report.
        foreach (var process in runningProcesses)
        {
            await process.DisposeAsync();
        }

        foreach (var name in leftoverNamespaces)
        {
            await Command.RunAsync(["ip", "netns", "delete", name], TimeSpan.FromSeconds(10));
        }

        foreach (var directory in leftoverEtcDirectories)
        {
            Directory.Delete(directory, recursive: true);
        }

        var rootNat = await Command.RunAsync(["iptables", "-t", "nat", "-S"], TimeSpan.FromSeconds(10));
        var rootNat6 = await Command.RunAsync(["ip6tables", "-t", "nat", "-S"], TimeSpan.FromSeconds(10));

        Assert.Multiple(() =>
        {
            Assert.That(leftoverNamespaces, Is.Empty, "network namespaces left behind (now deleted)");
            Assert.That(runningProcesses.Select(process => process.Name), Is.Empty, "processes left running (now killed)");
            Assert.That(leftoverEtcDirectories, Is.Empty, "/etc/netns directories left behind (now deleted)");
            Assert.That(rootNat.StandardOutput, Does.Not.Contain($":{EgressDeployment.ProxyPort}"), "an enclave redirect rule leaked into the root namespace");
            Assert.That(rootNat6.StandardOutput, Does.Not.Contain($":{EgressDeployment.ProxyPort}"), "an enclave redirect rule leaked into the root namespace");
        });
    }
}
