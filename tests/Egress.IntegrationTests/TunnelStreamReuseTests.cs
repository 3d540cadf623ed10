using System.Globalization;
using System.Text.RegularExpressions;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// Tunnel stream reuse (issue 15, docs/tunnel-protocol.md "Stream reuse") with both real hosts: sequential curls
/// through the enclave mostly ride streams that carried an earlier connection (egress-host's
/// <c>egress_tunnel_reuses_total</c>, scraped from its Prometheus endpoint, says how many; the tunnel streams it
/// accepted are the connections less those), and a restart of egress-host between two curls, which closes the
/// enclave's pooled streams under it, costs the next curl nothing.
/// </summary>
[TestFixture]
public sealed partial class TunnelStreamReuseTests : EgressFixture
{
    private const string MetricsAddress = "127.0.0.1:9464";
    private const int Curls = 20;

    internal override string ConfigToml =>
        EnclaveConfig.Render(EnclaveConfig.DefaultDestinations).Replace("[host]\n", $"[host]\nmetrics_listen = \"{MetricsAddress}\"\n", StringComparison.Ordinal);

    [Test]
    public async Task SequentialCurlsRideFarFewerTunnelStreamsThanConnections()
    {
        double before = await ParentReusesAsync();
        for (int i = 0; i < Curls; i++)
        {
            var curl = await Clients.CurlAsync(Topology.Enclave, "http://198.18.0.10/");
            Assert.That(curl.ExitCode, Is.Zero, curl.ToString);
            await Task.Delay(50); // between requests, as an application's calls are; the stream is back in the pool
        }

        double reused = await ParentReusesAsync() - before;
        double accepted = Curls - reused;
        await TestContext.Progress.WriteLineAsync($"[reuse] {Curls} sequential curls: egress-host accepted {accepted} tunnel streams, {reused} connections on reused streams");

        Assert.That(accepted, Is.LessThanOrEqualTo(Curls / 4), () => $"{reused} of {Curls} reused\n{Deployment.Host.Output}\n{Deployment.Enclave.Output}");
    }

    [Test]
    public async Task ACurlAfterTheParentRestartedSucceedsThoughItsPooledStreamIsGone()
    {
        var first = await Clients.CurlAsync(Topology.Enclave, "http://198.18.0.10/");
        Assert.That(first.ExitCode, Is.Zero, first.ToString);
        await Task.Delay(200); // the stream is back in the enclave's pool

        await Deployment.RestartHostAsync();
        var second = await Clients.CurlAsync(Topology.Enclave, "http://198.18.0.10/");
        var third = await Clients.CurlAsync(Topology.Enclave, "http://198.18.0.10/");

        Assert.Multiple(() =>
        {
            Assert.That(second.ExitCode, Is.Zero, () => $"{second}\n{Deployment.Enclave.Output}");
            Assert.That(third.ExitCode, Is.Zero, third.ToString);
            Assert.That(Deployment.Enclave.Output, Does.Not.Contain(" unavailable: "), "no connection failed for the restart");
        });
    }

    /// <summary>egress-host's <c>egress_tunnel_reuses_total</c> (0 before the first reuse, when the series is absent).</summary>
    private async Task<double> ParentReusesAsync()
    {
        var scrape = await Command.RunInNamespaceAsync(Topology.Parent, Clients.Timeout, "curl", "-sS", "--max-time", "5", $"http://{MetricsAddress}/metrics");
        Assert.That(scrape.ExitCode, Is.Zero, scrape.ToString);
        return ReusesLine().Matches(scrape.StandardOutput).Sum(match => double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture));
    }

    [GeneratedRegex(@"^egress_tunnel_reuses_total(\{[^}]*\})? (?<value>\S+)", RegexOptions.Multiline)]
    private static partial Regex ReusesLine();
}
