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

    private readonly Topology topology;

    private readonly int dnsPort;

    private EgressDeployment(Topology topology, string configPath, string tunnelSocketPath, BackgroundProcess host, BackgroundProcess enclave, string[] enclaveArguments, int dnsPort)
    {
        this.topology = topology;
        this.dnsPort = dnsPort;
        EnclaveArguments = enclaveArguments;
        ConfigPath = configPath;
        TunnelSocketPath = tunnelSocketPath;
        Host = host;
        Enclave = enclave;
    }

    public string ConfigPath { get; }

    public string TunnelSocketPath { get; }

    /// <summary>egress-host (parent namespace); its stdout/stderr lines are the parent's decision log. A new process
    /// after <see cref="RestartHostAsync"/>.</summary>
    public BackgroundProcess Host { get; private set; }

    /// <summary>egress-enclave (enclave namespace); one log line per connection decision. A new process after
    /// <see cref="RestartEnclaveAsync"/>.</summary>
    public BackgroundProcess Enclave { get; private set; }

    /// <summary>What egress-enclave runs with besides its configuration and tunnel.</summary>
    public string[] EnclaveArguments { get; private set; }

    /// <summary>Deploys both hosts; the topology owns (and kills) the processes.</summary>
    public static Task<EgressDeployment> StartAsync(Topology topology, string configToml) =>
        StartAsync(topology, configToml, hostOpenFiles: null, enclaveOpenFiles: null);

    /// <summary>
    /// Deploys both hosts, each under its own open-files limit (RLIMIT_NOFILE, soft and hard, set with prlimit as
    /// `ulimit -n` would) where one is given; the topology owns (and kills) the processes.
    /// </summary>
    /// <param name="stdoutPausedUntil">When given, each host's stdout goes to a pipe that is read up to the host's
    /// "listening on" line and then not again until this file exists (a stalled log shipper that recovers); stderr is
    /// read all along.</param>
    /// <param name="dnsPort">The port of the configuration's <c>dns_listen</c> on 127.0.0.1, waited for.</param>
    /// <param name="enclaveArguments">More arguments for egress-enclave (e.g. <c>--learned-addresses PATH</c>).</param>
    public static async Task<EgressDeployment> StartAsync(
        Topology topology, string configToml, int? hostOpenFiles, int? enclaveOpenFiles, string? stdoutPausedUntil = null, int dnsPort = DnsPort,
        string[]? enclaveArguments = null)
    {
        var configPath = Path.Combine(topology.WorkDirectory, "enclave.toml");
        await File.WriteAllTextAsync(configPath, configToml).ConfigureAwait(false);
        var tunnelSocket = Path.Combine(topology.WorkDirectory, "tunnel.sock");
        var tunnel = $"unix:{tunnelSocket}";

        var host = await StartHostAsync(topology, configPath, tunnelSocket, hostOpenFiles, stdoutPausedUntil).ConfigureAwait(false);

        var rules = await Command.RunInNamespaceAsync(topology.Enclave, ReadyTimeout, HostBinaries.Enclave("rules", "--apply", "--config", configPath)).ConfigureAwait(false);
        Assert.That(rules.ExitCode, Is.Zero, () => $"egress-enclave rules --apply failed: {rules}");

        enclaveArguments ??= [];
        var enclave = await StartEnclaveAsync(
            topology, StdoutPaused(stdoutPausedUntil, LimitOpenFiles(enclaveOpenFiles, HostBinaries.Enclave(["--config", configPath, "--tunnel", tunnel, .. enclaveArguments]))), dnsPort)
            .ConfigureAwait(false);
        return new EgressDeployment(topology, configPath, tunnelSocket, host, enclave, enclaveArguments, dnsPort);
    }

    /// <summary>
    /// Stops egress-enclave with <paramref name="signal"/> (KILL: as a crash; TERM: as a stop), waits for its exit and
    /// starts it again with <paramref name="arguments"/> (null: the same as before) after its configuration and tunnel,
    /// as bootstrap.sh's supervisor does; the rules stay.
    /// </summary>
    /// <returns>The previous process, exited (its log).</returns>
    public async Task<BackgroundProcess> RestartEnclaveAsync(string signal, string[]? arguments = null)
    {
        var previous = Enclave;
        var kill = await Command.RunAsync(["kill", $"-{signal}", previous.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], ReadyTimeout).ConfigureAwait(false);
        Assert.That(kill.ExitCode, Is.Zero, kill.ToString);
        await Wait.UntilAsync(() => Task.FromResult(previous.HasExited), ReadyTimeout, previous.ToString).ConfigureAwait(false);
        EnclaveArguments = arguments ?? EnclaveArguments;
        Enclave = await StartEnclaveAsync(
            topology, HostBinaries.Enclave(["--config", ConfigPath, "--tunnel", $"unix:{TunnelSocketPath}", .. EnclaveArguments]), dnsPort).ConfigureAwait(false);
        return previous;
    }

    private static async Task<BackgroundProcess> StartEnclaveAsync(Topology topology, string[] command, int dnsPort)
    {
        var enclave = topology.StartProcess("egress-enclave", topology.Enclave, command);
        await Wait.UntilAsync(
            async () => enclave.HasExited || (await IsListeningAsync(topology.Enclave, "-Hltn", IPAddress.Loopback, ProxyPort).ConfigureAwait(false)
                && await IsListeningAsync(topology.Enclave, "-Hltn", IPAddress.IPv6Loopback, ProxyPort).ConfigureAwait(false)
                && await IsListeningAsync(topology.Enclave, "-Hlun", IPAddress.Loopback, dnsPort).ConfigureAwait(false)
                && await IsListeningAsync(topology.Enclave, "-Hltn", IPAddress.Loopback, dnsPort).ConfigureAwait(false)),
            ReadyTimeout,
            () => $"egress-enclave is not listening on 127.0.0.1:{ProxyPort}, [::1]:{ProxyPort} and 127.0.0.1:{dnsPort} (UDP and TCP): {enclave}").ConfigureAwait(false);
        Assert.That(enclave.HasExited, Is.False, () => $"egress-enclave exited during startup: {enclave}");
        return enclave;
    }

    /// <summary>
    /// Restarts egress-host as an operator would (SIGTERM, wait for the exit, start it again with the same command
    /// line): the new process starts with an empty allowlist cache while egress-enclave keeps running.
    /// </summary>
    /// <returns>The previous process, exited (its log).</returns>
    public async Task<BackgroundProcess> RestartHostAsync()
    {
        var previous = Host;
        var kill = await Command.RunAsync(["kill", "-TERM", previous.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], ReadyTimeout).ConfigureAwait(false);
        Assert.That(kill.ExitCode, Is.Zero, kill.ToString);
        await Wait.UntilAsync(() => Task.FromResult(previous.HasExited), ReadyTimeout, previous.ToString).ConfigureAwait(false);
        Host = await StartHostAsync(topology, ConfigPath, TunnelSocketPath, openFiles: null).ConfigureAwait(false);
        return previous;
    }

    private static async Task<BackgroundProcess> StartHostAsync(Topology topology, string configPath, string tunnelSocket, int? openFiles, string? stdoutPausedUntil = null)
    {
        var host = topology.StartProcess("egress-host", topology.Parent,
            StdoutPaused(stdoutPausedUntil, LimitOpenFiles(openFiles, HostBinaries.Host("--config", configPath, "--tunnel", $"unix:{tunnelSocket}"))));
        await Wait.UntilAsync(
            async () => host.HasExited || (File.Exists(tunnelSocket) && await host.WaitForLineAsync(line => line.Contains("gateway listening on", StringComparison.Ordinal), TimeSpan.Zero).ConfigureAwait(false) is not null),
            ReadyTimeout,
            () => $"egress-host did not listen on {tunnelSocket}: {host}").ConfigureAwait(false);
        Assert.That(host.HasExited, Is.False, () => $"egress-host exited during startup: {host}");
        return host;
    }

    /// <summary>
    /// The command with its stdout on a FIFO whose reader passes lines on up to the first "listening on" line (what
    /// readiness waits for), then holds the FIFO open without reading it (the pipe and then the host's log queue fill)
    /// until <paramref name="resumeFile"/> exists, and then passes the rest on; stderr is not redirected. The shell
    /// execs the command, so the process started is the host itself (its id, its exit) and the reader is its child.
    /// </summary>
    private static string[] StdoutPaused(string? resumeFile, string[] command) =>
        resumeFile is null
            ? command
            : ["sh", "-c",
                "f=$1; shift; p=\"$f.$$.fifo\"; mkfifo \"$p\" || exit 1; "
                + "{ sed -u '/listening on/q'; while [ ! -e \"$f\" ]; do sleep 0.2; done; exec cat; } <\"$p\" & "
                + "exec \"$@\" >\"$p\"",
                "sh", resumeFile, .. command];

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
