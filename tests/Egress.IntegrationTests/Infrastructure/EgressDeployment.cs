using System.Net;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// The system under test deployed on a <see cref="Topology"/>: egress-host in the parent namespace listening on a
/// Unix socket (the VSOCK stand-in), the enclave's iptables/route rules applied with `egress-enclave rules --apply`,
/// and egress-enclave in the enclave namespace with its proxy on 127.0.0.1:4444 and [::1]:4444 and its DNS forwarder on
/// 127.0.0.1:53 (UDP and TCP).
/// </summary>
internal sealed class EgressDeployment
{
    public const int ProxyPort = 4444;

    public const int DnsPort = 53;

    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(15);

    private EgressDeployment(string configPath, string tunnelSocketPath, BackgroundProcess host, BackgroundProcess enclave)
    {
        ConfigPath = configPath;
        TunnelSocketPath = tunnelSocketPath;
        Host = host;
        Enclave = enclave;
    }

    public string ConfigPath { get; }

    public string TunnelSocketPath { get; }

    /// <summary>egress-host (parent namespace); its stdout/stderr lines are the parent's decision log.</summary>
    public BackgroundProcess Host { get; }

    /// <summary>egress-enclave (enclave namespace); one log line per connection decision.</summary>
    public BackgroundProcess Enclave { get; }

    /// <summary>Deploys both hosts; the topology owns (and kills) the processes.</summary>
    public static Task<EgressDeployment> StartAsync(Topology topology, string configToml) =>
        StartAsync(topology, configToml, hostOpenFiles: null, enclaveOpenFiles: null);

    /// <summary>
    /// Deploys both hosts, each under its own open-files limit (RLIMIT_NOFILE, soft and hard, set with prlimit as
    /// `ulimit -n` would) where one is given; the topology owns (and kills) the processes.
    /// </summary>
    public static async Task<EgressDeployment> StartAsync(Topology topology, string configToml, int? hostOpenFiles, int? enclaveOpenFiles)
    {
        var configPath = Path.Combine(topology.WorkDirectory, "enclave.toml");
        await File.WriteAllTextAsync(configPath, configToml).ConfigureAwait(false);
        var tunnelSocket = Path.Combine(topology.WorkDirectory, "tunnel.sock");
        var tunnel = $"unix:{tunnelSocket}";

        var host = topology.StartProcess("egress-host", topology.Parent,
            LimitOpenFiles(hostOpenFiles, HostBinaries.Host("--config", configPath, "--tunnel", tunnel)));
        await Wait.UntilAsync(
            () => Task.FromResult(File.Exists(tunnelSocket) || host.HasExited),
            ReadyTimeout,
            () => $"egress-host did not create {tunnelSocket}: {host}").ConfigureAwait(false);
        Assert.That(host.HasExited, Is.False, () => $"egress-host exited during startup: {host}");

        var rules = await Command.RunInNamespaceAsync(topology.Enclave, ReadyTimeout, HostBinaries.Enclave("rules", "--apply", "--config", configPath)).ConfigureAwait(false);
        Assert.That(rules.ExitCode, Is.Zero, () => $"egress-enclave rules --apply failed: {rules}");

        var enclave = topology.StartProcess("egress-enclave", topology.Enclave,
            LimitOpenFiles(enclaveOpenFiles, HostBinaries.Enclave("--config", configPath, "--tunnel", tunnel)));
        await Wait.UntilAsync(
            async () => enclave.HasExited || (await IsListeningAsync(topology.Enclave, "-Hltn", IPAddress.Loopback, ProxyPort).ConfigureAwait(false)
                && await IsListeningAsync(topology.Enclave, "-Hltn", IPAddress.IPv6Loopback, ProxyPort).ConfigureAwait(false)
                && await IsListeningAsync(topology.Enclave, "-Hlun", IPAddress.Loopback, DnsPort).ConfigureAwait(false)
                && await IsListeningAsync(topology.Enclave, "-Hltn", IPAddress.Loopback, DnsPort).ConfigureAwait(false)),
            ReadyTimeout,
            () => $"egress-enclave is not listening on 127.0.0.1:{ProxyPort}, [::1]:{ProxyPort} and 127.0.0.1:{DnsPort} (UDP and TCP): {enclave}").ConfigureAwait(false);
        Assert.That(enclave.HasExited, Is.False, () => $"egress-enclave exited during startup: {enclave}");

        return new EgressDeployment(configPath, tunnelSocket, host, enclave);
    }

    /// <summary>The command run under prlimit (which execs it: the process id stays the host's) when a limit is given.</summary>
    private static string[] LimitOpenFiles(int? openFiles, string[] command) =>
        openFiles is { } limit ? ["prlimit", $"--nofile={limit}:{limit}", "--", .. command] : command;

    /// <summary>
    /// Checks with `ss` (<paramref name="ssOptions"/>: -Hltn for TCP, -Hlun for UDP) that something listens for
    /// <paramref name="address"/> on <paramref name="port"/> (specific or wildcard bind); a probe connection or query
    /// would itself be a logged decision.
    /// </summary>
    private static async Task<bool> IsListeningAsync(string namespaceName, string ssOptions, IPAddress address, int port)
    {
        var result = await Command.RunInNamespaceAsync(namespaceName, TimeSpan.FromSeconds(5), "ss", ssOptions, "sport", "=", $":{port}").ConfigureAwait(false);
        string[] accepted = address.Equals(IPAddress.IPv6Loopback)
            ? [$"[::1]:{port}", $"[::]:{port}", $"*:{port}"]
            : [$"127.0.0.1:{port}", $"0.0.0.0:{port}", $"*:{port}"];
        return result.ExitCode == 0 && result.StandardOutput
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Any(columns => columns.Length >= 4 && columns[0] is "LISTEN" or "UNCONN" && accepted.Contains(columns[3]));
    }
}
