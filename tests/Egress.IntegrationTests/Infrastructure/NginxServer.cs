using System.Globalization;
using System.Net;
using System.Security.Cryptography;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// nginx in the world namespace on ports 80 and 8080 (IPv4 and IPv6), serving <see cref="IndexBody"/> at "/" and
/// "&lt;server address&gt; &lt;server port&gt;" at "/whoami". Its access log records which world address was reached.
/// </summary>
internal sealed class NginxServer : IAsyncDisposable
{
    private readonly BackgroundProcess process;
    private readonly string accessLogPath;

    private NginxServer(BackgroundProcess process, string accessLogPath, string indexBody)
    {
        this.process = process;
        this.accessLogPath = accessLogPath;
        IndexBody = indexBody;
    }

    /// <summary>The known file at "/": includes a per-run token, so it cannot come from anywhere else.</summary>
    public string IndexBody { get; }

    public static async Task<NginxServer> StartAsync(Topology topology)
    {
        var directory = Path.Combine(topology.WorkDirectory, "nginx");
        var www = Path.Combine(directory, "www");
        Directory.CreateDirectory(www);
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        var indexBody = $"egress integration test file {token}\n";
        await File.WriteAllTextAsync(Path.Combine(www, "index.html"), indexBody).ConfigureAwait(false);
        var accessLog = Path.Combine(directory, "access.log");
        var config = Path.Combine(directory, "nginx.conf");
        await File.WriteAllTextAsync(config, string.Create(CultureInfo.InvariantCulture, $$"""
            master_process off;
            pid {{directory}}/nginx.pid;
            error_log {{directory}}/error.log info;
            events { worker_connections 512; }
            http {
              log_format egress '$server_addr $server_port "$request" $status';
              access_log {{accessLog}} egress;
              client_body_temp_path {{directory}}/body;
              proxy_temp_path {{directory}}/proxy;
              fastcgi_temp_path {{directory}}/fastcgi;
              uwsgi_temp_path {{directory}}/uwsgi;
              scgi_temp_path {{directory}}/scgi;
              default_type text/plain;
              server {
                listen 0.0.0.0:{{WorldPorts.Http}};
                listen [::]:{{WorldPorts.Http}} ipv6only=on;
                listen 0.0.0.0:{{WorldPorts.HttpAlt}};
                listen [::]:{{WorldPorts.HttpAlt}} ipv6only=on;
                root {{www}};
                location = /whoami { return 200 "$server_addr $server_port\n"; }
              }
            }
            """)).ConfigureAwait(false);

        var process = topology.StartProcess("nginx", topology.World,
            "nginx", "-p", directory, "-e", Path.Combine(directory, "error.log"), "-c", config, "-g", "daemon off;");
        var server = new NginxServer(process, accessLog, indexBody);
        await Wait.UntilAsync(
            async () => !process.HasExited
                && await NetworkNamespace.CanConnectAsync(topology.World, new IPEndPoint(IPAddress.Loopback, WorldPorts.Http), TimeSpan.FromSeconds(1)).ConfigureAwait(false)
                && await NetworkNamespace.CanConnectAsync(topology.World, new IPEndPoint(IPAddress.IPv6Loopback, WorldPorts.HttpAlt), TimeSpan.FromSeconds(1)).ConfigureAwait(false),
            TimeSpan.FromSeconds(10),
            () => $"nginx did not start listening: {process}").ConfigureAwait(false);
        return server;
    }

    /// <summary>Access log lines: "server_addr server_port \"request\" status".</summary>
    public IReadOnlyList<string> AccessLog() =>
        File.Exists(accessLogPath) ? File.ReadAllLines(accessLogPath) : [];

    /// <summary>True when any request reached nginx on <paramref name="address"/>.</summary>
    public bool WasReachedOn(IPAddress address) =>
        AccessLog().Any(line => line.StartsWith(address + " ", StringComparison.Ordinal));

    public ValueTask DisposeAsync() => process.DisposeAsync();
}
