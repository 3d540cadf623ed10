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
    /// Both hosts turn on the library's switches for a process whose loggers and audit log never block (each off in the
    /// library, where a caller's logger may block): <c>Egress.Relay.EndOnEpollThread</c>, a relay that ends clean on an
    /// epoll thread finishes there with the host's code after it, and <c>Egress.Connections.HandlersOnAcceptThread</c>, a
    /// connection's handler starts on the thread that accepted it. Together they leave no thread hand-off per
    /// connection (docs/benchmarks.md, "No accept hand-off": egress-enclave's end of the relay alone measured nothing
    /// while its accept hand-off stayed).
    /// </summary>
    [TestCase("egress-enclave", "Egress.Relay.EndOnEpollThread")]
    [TestCase("egress-host", "Egress.Relay.EndOnEpollThread")]
    [TestCase("egress-enclave", "Egress.Connections.HandlersOnAcceptThread")]
    [TestCase("egress-host", "Egress.Connections.HandlersOnAcceptThread")]
    public void BothHostsTurnOnTheSwitchesForLoggersThatNeverBlock(string program, string runtimeSwitch)
    {
        string path = RuntimeConfigOf(program);
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        var properties = document.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");

        bool on = properties.TryGetProperty(runtimeSwitch, out var value) && value.GetBoolean();
        Assert.That(on, Is.True, path);
    }

    private static string RuntimeConfigOf(string program) =>
        Path.ChangeExtension(program == "egress-enclave" ? HostBinaries.EnclaveDll : HostBinaries.HostDll, ".runtimeconfig.json");
}
