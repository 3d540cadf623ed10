using System.Collections.Concurrent;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>Every namespace, process and /etc/netns directory the suite created, so the assembly teardown can prove none is left.</summary>
internal static class ResourceLedger
{
    private static readonly ConcurrentDictionary<string, byte> Namespaces = new();
    private static readonly ConcurrentQueue<BackgroundProcess> Processes = new();
    private static readonly ConcurrentDictionary<string, byte> EtcDirectories = new();

    public static IReadOnlyCollection<string> CreatedNamespaces => [.. Namespaces.Keys];

    public static IReadOnlyCollection<BackgroundProcess> StartedProcesses => [.. Processes];

    /// <summary>Per-namespace configuration directories written under /etc/netns.</summary>
    public static IReadOnlyCollection<string> CreatedEtcDirectories => [.. EtcDirectories.Keys];

    public static void Track(string namespaceName) => Namespaces[namespaceName] = 0;

    public static void TrackEtcDirectory(string path) => EtcDirectories[path] = 0;

    public static void Track(BackgroundProcess process) => Processes.Enqueue(process);

    /// <summary>The network namespaces currently known to iproute2 (`ip netns list`).</summary>
    public static async Task<IReadOnlyList<string>> ListNamespacesAsync()
    {
        var output = await Command.RunCheckedAsync("ip", "netns", "list").ConfigureAwait(false);
        return
        [
            .. output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(line => line.Split(' ')[0]),
        ];
    }
}
