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
        string path = RuntimeConfigOf(program);
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        var properties = document.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");

        Assert.That(properties.TryGetProperty("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit", out var limit), Is.True, path);
        Assert.That(limit.GetInt32(), Is.Zero, path);
    }

    /// <summary>
    /// egress-host lets a relay that ends on an epoll thread finish there with the gateway's code after it (no thread
    /// hand-off per connection; its logger never blocks): the switch <c>Egress.Relay.EndOnEpollThread</c>. egress-enclave
    /// does not set it (measured, it saved nothing there: its accept hand-off stays), so its relays end on the thread pool.
    /// </summary>
    [TestCase("egress-enclave", false)]
    [TestCase("egress-host", true)]
    public void OnlyEgressHostEndsRelaysOnTheEpollThread(string program, bool expected)
    {
        string path = RuntimeConfigOf(program);
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        var properties = document.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");

        bool on = properties.TryGetProperty("Egress.Relay.EndOnEpollThread", out var value) && value.GetBoolean();
        Assert.That(on, Is.EqualTo(expected), path);
    }

    private static string RuntimeConfigOf(string program) =>
        Path.ChangeExtension(program == "egress-enclave" ? HostBinaries.EnclaveDll : HostBinaries.HostDll, ".runtimeconfig.json");
}
