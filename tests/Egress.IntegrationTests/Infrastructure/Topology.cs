using System.Globalization;
using System.Net;
using System.Security.Cryptography;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// Three network namespaces on the real kernel:
/// <list type="bullet">
/// <item><see cref="Enclave"/>: only <c>lo</c> (what a Nitro Enclave has).</item>
/// <item><see cref="Parent"/>: 198.18.0.1/15 and 2001:db8::1/64 on a veth to the world, default routes via it.</item>
/// <item><see cref="World"/>: the destinations (<see cref="WorldAddresses"/>), where the test servers run.</item>
/// </list>
/// Disposal kills every process and server started through it and deletes the namespaces, even after failures.
/// </summary>
internal sealed class Topology : IAsyncDisposable
{
    private readonly Stack<IAsyncDisposable> resources = new();
    private readonly string parentVeth;
    private readonly string worldVeth;

    private Topology(string suffix)
    {
        Enclave = $"eg-enc-{suffix}";
        Parent = $"eg-par-{suffix}";
        World = $"eg-wld-{suffix}";
        parentVeth = $"eg-vp-{suffix}";
        worldVeth = $"eg-vw-{suffix}";
        WorkDirectory = Directory.CreateTempSubdirectory($"eg-{suffix}-").FullName;
    }

    public string Enclave { get; }

    public string Parent { get; }

    public string World { get; }

    /// <summary>A private temp directory for configs, sockets and logs; deleted on disposal.</summary>
    public string WorkDirectory { get; }

    public static async Task<Topology> CreateAsync()
    {
        var topology = new Topology(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(2)));
        try
        {
            await topology.BuildAsync().ConfigureAwait(false);
            return topology;
        }
        catch
        {
            await topology.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Starts a long-running command inside <paramref name="namespaceName"/>; killed when the topology goes.</summary>
    public BackgroundProcess StartProcess(string name, string namespaceName, params string[] command)
    {
        var process = BackgroundProcess.Start(name, ["ip", "netns", "exec", namespaceName, .. command]);
        resources.Push(process);
        return process;
    }

    /// <summary>Starts a C# test server in the world namespace; stopped when the topology goes.</summary>
    public WorldServer StartWorldServer(string name, int port, ServerBehaviour behaviour)
    {
        var server = WorldServer.Start(World, name, port, behaviour);
        resources.Push(server);
        return server;
    }

    public async Task<NginxServer> StartNginxAsync()
    {
        var nginx = await NginxServer.StartAsync(this).ConfigureAwait(false);
        resources.Push(nginx);
        return nginx;
    }

    /// <summary>dnsmasq at 198.18.0.53 in the world answering only <paramref name="records"/>.</summary>
    public async Task<DnsmasqServer> StartDnsmasqAsync(params DnsmasqRecord[] records)
    {
        var dnsmasq = await DnsmasqServer.StartAsync(this, records).ConfigureAwait(false);
        resources.Push(dnsmasq);
        return dnsmasq;
    }

    /// <summary>Points the enclave namespace's resolv.conf at <paramref name="nameserver"/> (for clients run with `ip netns exec`).</summary>
    public void SetEnclaveNameserver(IPAddress nameserver) => resources.Push(NamespaceResolvConf.Write(Enclave, nameserver));

    /// <summary>nginx plus every C# world server (echo, banner, reply-after-EOF, SHA-256 sink, source).</summary>
    public async Task<WorldServices> StartWorldServicesAsync()
    {
        var nginx = await StartNginxAsync().ConfigureAwait(false);
        return new WorldServices(
            nginx,
            StartWorldServer("echo", WorldPorts.Echo, ServerBehaviours.EchoAsync),
            StartWorldServer("banner", WorldPorts.Banner, ServerBehaviours.BannerThenEchoAsync),
            StartWorldServer("reply-after-eof", WorldPorts.ReplyAfterEof, ServerBehaviours.ReplyAfterEofAsync),
            StartWorldServer("sha256-sink", WorldPorts.Sha256Sink, ServerBehaviours.Sha256SinkAsync),
            StartWorldServer("source", WorldPorts.Source, ServerBehaviours.SourceAsync));
    }

    /// <summary>Registers something to dispose (before the namespaces are deleted, in reverse order).</summary>
    public void Own(IAsyncDisposable resource) => resources.Push(resource);

    public async ValueTask DisposeAsync()
    {
        var failures = new List<Exception>();
        while (resources.TryPop(out var resource))
        {
            try
            {
                await resource.DisposeAsync().ConfigureAwait(false);
            }
#pragma warning disable CA1031 // collected and rethrown after the namespaces are gone
            catch (Exception e)
#pragma warning restore CA1031
            {
                failures.Add(e);
            }
        }

        // Deleting the veth explicitly frees it even if something still pins a namespace.
        await Command.RunAsync(["ip", "-n", Parent, "link", "del", parentVeth], TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        foreach (var name in new[] { Enclave, Parent, World })
        {
            var listed = await ResourceLedger.ListNamespacesAsync().ConfigureAwait(false);
            if (!listed.Contains(name))
            {
                continue;
            }

            var result = await Command.RunAsync(["ip", "netns", "delete", name], TimeSpan.FromSeconds(10)).ConfigureAwait(false);
            if (result.ExitCode != 0)
            {
                failures.Add(new InvalidOperationException($"ip netns delete {name}: {result}"));
            }
        }

        try
        {
            Directory.Delete(WorkDirectory, recursive: true);
        }
        catch (IOException e)
        {
            failures.Add(e);
        }

        if (failures.Count > 0)
        {
            throw new AggregateException("topology teardown had failures", failures);
        }
    }

    private async Task BuildAsync()
    {
        foreach (var name in new[] { Enclave, Parent, World })
        {
            ResourceLedger.Track(name);
            await Command.RunCheckedAsync("ip", "netns", "add", name).ConfigureAwait(false);
            await Command.RunCheckedAsync("ip", "-n", name, "link", "set", "lo", "up").ConfigureAwait(false);
        }

        await Command.RunCheckedAsync("ip", "-n", Parent, "link", "add", parentVeth, "type", "veth", "peer", "name", worldVeth, "netns", World).ConfigureAwait(false);

        await Ip(Parent, "addr", "add", $"{WorldAddresses.Parent}/15", "dev", parentVeth).ConfigureAwait(false);
        await Ip(Parent, "-6", "addr", "add", $"{WorldAddresses.ParentV6}/64", "dev", parentVeth, "nodad").ConfigureAwait(false);
        await Ip(Parent, "link", "set", parentVeth, "up").ConfigureAwait(false);

        foreach (var (address, prefixLength) in WorldAddresses.WorldV4)
        {
            await Ip(World, "addr", "add", string.Create(CultureInfo.InvariantCulture, $"{address}/{prefixLength}"), "dev", worldVeth).ConfigureAwait(false);
        }

        await Ip(World, "-6", "addr", "add", $"{WorldAddresses.AllowedV6}/64", "dev", worldVeth, "nodad").ConfigureAwait(false);
        await Ip(World, "link", "set", worldVeth, "up").ConfigureAwait(false);

        // The parent's default routes point into the world; nothing leaves the machine. The metadata address gets an
        // explicit host route too, so it is reachable exactly as on EC2.
        await Ip(Parent, "route", "add", "default", "via", $"{WorldAddresses.Allowed}", "dev", parentVeth).ConfigureAwait(false);
        await Ip(Parent, "route", "add", $"{WorldAddresses.Metadata}/32", "via", $"{WorldAddresses.Allowed}", "dev", parentVeth).ConfigureAwait(false);
        await Ip(Parent, "-6", "route", "add", "default", "via", $"{WorldAddresses.AllowedV6}", "dev", parentVeth).ConfigureAwait(false);
    }

    private static Task<string> Ip(string namespaceName, params string[] arguments) =>
        Command.RunCheckedAsync(["ip", "-n", namespaceName, .. arguments]);
}
