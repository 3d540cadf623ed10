namespace Egress.IntegrationTests.Infrastructure;

/// <summary><c>openssl s_server -www -msg</c> in the world namespace with a fresh self-signed P-256 certificate: it
/// answers any server name and prints every ClientHello that reaches it (<c>&lt;&lt;&lt; ... ClientHello</c>).</summary>
internal static class TlsWorldServer
{
    /// <summary>Starts it on <paramref name="port"/> of every world address (stopped with the topology) and waits
    /// until it accepts.</summary>
    public static async Task<BackgroundProcess> StartAsync(Topology topology, string commonName, int port)
    {
        string key = Path.Combine(topology.WorkDirectory, "tls.key");
        string cert = Path.Combine(topology.WorkDirectory, "tls.crt");
        var made = await Command.RunAsync(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-subj", $"/CN={commonName}", "-days", "1"],
            Clients.Timeout);
        Assert.That(made.ExitCode, Is.Zero, made.ToString);
        var server = topology.StartProcess("openssl-s_server", topology.World, "openssl", "s_server", "-accept", $"{port}", "-cert", cert, "-key", key, "-www", "-msg");
        Assert.That(await server.WaitForLineAsync(line => line.Contains("ACCEPT", StringComparison.Ordinal), TimeSpan.FromSeconds(10)), Is.Not.Null, () => server.Output);
        return server;
    }
}
