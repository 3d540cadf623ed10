namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// dnsmasq in the world namespace at <see cref="WorldAddresses.Dns"/>:53 (UDP and TCP), the authoritative upstream
/// for the test names: it answers only the given records, with TTL <see cref="DefaultTtlSeconds"/> unless a record
/// says otherwise, and NXDOMAIN for every other name (it never forwards anywhere).
/// </summary>
internal sealed class DnsmasqServer : IAsyncDisposable
{
    public const int DefaultTtlSeconds = 300;

    private readonly BackgroundProcess process;

    private DnsmasqServer(BackgroundProcess process) => this.process = process;

    /// <summary>The query log (dnsmasq --log-queries), for asserting what reached the upstream.</summary>
    public IReadOnlyList<string> Log => process.Lines;

    public static async Task<DnsmasqServer> StartAsync(Topology topology, IEnumerable<DnsmasqRecord> records)
    {
        List<string> command =
        [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
            "--bind-interfaces", $"--listen-address={WorldAddresses.Dns}", "--port=53", "--user=root",
            $"--pid-file={Path.Combine(topology.WorkDirectory, "dnsmasq.pid")}", "--log-queries", "--log-facility=-",
            "--local=/#/", $"--local-ttl={DefaultTtlSeconds}",
        ];
        command.AddRange(records.Select(record => record.Option));
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

    /// <summary>True when a query for <paramref name="name"/> (any type, case ignored) reached dnsmasq.</summary>
    public bool WasAsked(string name) =>
        Log.Any(line => line.Contains("query[", StringComparison.Ordinal)
            && line.Contains($"] {name} from ", StringComparison.OrdinalIgnoreCase));

    public ValueTask DisposeAsync() => process.DisposeAsync();
}
