using System.Net;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// dnsmasq in the world namespace at <see cref="WorldAddresses.Dns"/>:53, the authoritative upstream for the test
/// names: it answers only the given records and NXDOMAIN for every other name (it never forwards anywhere).
/// </summary>
internal sealed class DnsmasqServer : IAsyncDisposable
{
    private readonly BackgroundProcess process;

    private DnsmasqServer(BackgroundProcess process) => this.process = process;

    /// <summary>The query log (dnsmasq --log-queries), for asserting what reached the upstream.</summary>
    public IReadOnlyList<string> Log => process.Lines;

    public static async Task<DnsmasqServer> StartAsync(Topology topology, IEnumerable<(string Name, IPAddress Address)> records)
    {
        List<string> command =
        [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
            "--bind-interfaces", $"--listen-address={WorldAddresses.Dns}", "--port=53", "--user=root",
            $"--pid-file={Path.Combine(topology.WorkDirectory, "dnsmasq.pid")}", "--log-queries", "--log-facility=-",
            "--local=/#/",
        ];
        command.AddRange(records.Select(record => $"--address=/{record.Name}/{record.Address}"));
        var process = topology.StartProcess("dnsmasq", topology.World, [.. command]);
        await Wait.UntilAsync(
            () => Task.FromResult(process.HasExited || process.Lines.Any(line => line.Contains("started, version", StringComparison.Ordinal))),
            TimeSpan.FromSeconds(10),
            () => $"dnsmasq did not start: {process}").ConfigureAwait(false);
        if (process.HasExited)
        {
            throw new InvalidOperationException($"dnsmasq exited: {process}");
        }
        return new DnsmasqServer(process);
    }

    public ValueTask DisposeAsync() => process.DisposeAsync();
}
