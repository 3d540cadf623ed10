using System.Text.Json;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>The runtime settings the hosts ship with, as their built runtimeconfig.json carries them (no root needed).</summary>
[TestFixture]
public sealed class RuntimeConfigurationTests
{
    /// <summary>
    /// Idle thread-pool workers do not spin before they sleep: the spinning took about 15 % of both hosts' CPU per relayed
    /// connection (docs/benchmarks.md, "Thread-pool spinning"). Set in each host's project file; this fails if either
    /// loses it.
    /// </summary>
    [TestCase("egress-enclave")]
    [TestCase("egress-host")]
    public void IdleThreadPoolWorkersDoNotSpin(string program)
    {
        string dll = program == "egress-enclave" ? HostBinaries.EnclaveDll : HostBinaries.HostDll;
        string path = Path.ChangeExtension(dll, ".runtimeconfig.json");

        using var document = JsonDocument.Parse(File.ReadAllText(path));
        var properties = document.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");

        Assert.That(properties.TryGetProperty("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit", out var limit), Is.True, path);
        Assert.That(limit.GetInt32(), Is.Zero, path);
    }
}
