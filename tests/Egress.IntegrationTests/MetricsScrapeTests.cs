using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// egress-host's Prometheus endpoint (<c>[host] metrics_listen = "127.0.0.1:9464"</c>) scraped for real from the
/// parent namespace after real traffic from the enclave (an allowed curl, a denied curl, DNS for an allowed name);
/// and egress-host's <c>--log-format json</c> output parsed line by line.
/// </summary>
[TestFixture]
public sealed partial class MetricsScrapeTests
{
    private const string MetricsAddress = "127.0.0.1:9464";
    private const string AllowedName = "metrics.test";

    private Topology? topology;
    private WorldServices? world;
    private EgressDeployment? deployment;

    [OneTimeSetUp]
    public async Task Deploy()
    {
        Root.RequireOrIgnore();
        topology = await Topology.CreateAsync();
        world = await topology.StartWorldServicesAsync();
        await topology.StartDnsmasqAsync(DnsmasqRecord.Host(AllowedName, IPAddress.Parse("198.18.0.10")));
        string toml = EnclaveConfig.Render([.. EnclaveConfig.DefaultDestinations, AllowedName]);
        toml = toml.Replace("[host]\n", $"[host]\nmetrics_listen = \"{MetricsAddress}\"\n", StringComparison.Ordinal);
        deployment = await EgressDeployment.StartAsync(topology, toml);
    }

    [OneTimeTearDown]
    public async Task TearDown()
    {
        if (topology is null)
        {
            return;
        }

        if (deployment is not null)
        {
            await TestContext.Progress.WriteLineAsync($"[harness] {nameof(MetricsScrapeTests)} egress-host log:\n{deployment.Host.Output}");
        }

        await topology.DisposeAsync();
    }

    [Test]
    public async Task ScrapeAfterTrafficShowsTheParentsConnectionAndDnsCounters()
    {
        var topo = topology!;
        var dig = await Command.RunInNamespaceAsync(topo.Enclave, Clients.Timeout, "dig", "@127.0.0.1", "+short", "+tries=1", "+time=5", AllowedName, "A");
        var allowed = await Clients.CurlAsync(topo.Enclave, "http://198.18.0.10/");
        var denied = await Clients.CurlAsync(topo.Enclave, "http://198.18.0.99/");
        Assert.Multiple(() =>
        {
            Assert.That(dig.StandardOutput.Trim(), Is.EqualTo("198.18.0.10"), dig.ToString);
            Assert.That(allowed.ExitCode, Is.Zero, allowed.ToString);
            Assert.That(denied.ExitCode, Is.AnyOf(Clients.RefusedOrReset), denied.ToString);
        });

        string scrape = "";
        await Wait.UntilAsync(
            async () =>
            {
                var result = await Command.RunInNamespaceAsync(topo.Parent, Clients.Timeout, "curl", "-sS", "--max-time", "5", $"http://{MetricsAddress}/metrics");
                scrape = result.StandardOutput;
                return Sample(scrape, "egress_relay_bytes_total", ("egress_direction", "in")) > 0;
            },
            TimeSpan.FromSeconds(10),
            () => $"no relayed bytes in the scrape:\n{scrape}");
        await TestContext.Progress.WriteLineAsync($"[scrape]\n{string.Join('\n', scrape.Split('\n').Where(line => line.StartsWith("egress_", StringComparison.Ordinal)))}");

        Assert.Multiple(() =>
        {
            // The enclave denied 198.18.0.99 itself: the parent counts only what reached it.
            Assert.That(Sample(scrape, "egress_connections_total", ("egress_side", "parent"), ("egress_outcome", "allowed"), ("egress_reason", "static_entry")), Is.EqualTo(1));
            Assert.That(Sample(scrape, "egress_connections_total", ("egress_outcome", "denied")), Is.Null);
            Assert.That(Sample(scrape, "egress_dns_queries_total", ("egress_side", "parent"), ("egress_outcome", "forwarded")), Is.GreaterThanOrEqualTo(1));
            Assert.That(Sample(scrape, "egress_relay_bytes_total", ("egress_direction", "out")), Is.GreaterThan(0));
            Assert.That(Sample(scrape, "egress_connection_duration_seconds_count", ("egress_side", "parent")), Is.EqualTo(1));
            Assert.That(Sample(scrape, "egress_cache_entries", ("egress_side", "parent")), Is.EqualTo(1), "metrics.test's address was learned");
            Assert.That(scrape, Does.Contain("# TYPE egress_connections_total counter"));
        });
    }

    [Test]
    public async Task JsonLogFormatWritesOneJsonObjectPerLine()
    {
        var topo = topology!;
        var socket = Path.Combine(topo.WorkDirectory, "json.sock");
        var host = topo.StartProcess("egress-host json", topo.Parent,
            HostBinaries.Host("--config", deployment!.ConfigPath, "--tunnel", $"unix:{socket}", "--metrics-listen", "127.0.0.1:9465", "--log-format", "json"));
        Assert.That(await host.WaitForLineAsync(line => line.Contains("gateway listening", StringComparison.Ordinal), TimeSpan.FromSeconds(15)), Is.Not.Null, host.ToString);
        var stop = await Command.RunAsync(["kill", "-TERM", host.Id.ToString(CultureInfo.InvariantCulture)], Clients.Timeout);
        Assert.That(stop.ExitCode, Is.Zero, stop.ToString);
        await Wait.UntilAsync(() => Task.FromResult(host.HasExited), TimeSpan.FromSeconds(20), host.ToString);

        var entries = host.Lines.Select(line => JsonDocument.Parse(line).RootElement).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(host.ExitCode, Is.Zero, host.ToString);
            Assert.That(entries, Has.Count.GreaterThanOrEqualTo(4), host.ToString);
            // The host's own lines: starting, policy, where metrics are served (once the exporter is bound), stopping, stopped.
            Assert.That(entries.Where(e => e.GetProperty("Category").GetString() == "Egress.Host").Select(e => e.GetProperty("EventId").GetInt32()), Is.EqualTo(new[] { 1, 2, 8, 6, 7 }));
            Assert.That(entries.Select(e => e.GetProperty("Category").GetString()), Has.All.AnyOf("Egress.Host", "Egress.Gateway"));
            Assert.That(entries[^1].GetProperty("Message").GetString(), Is.EqualTo("stopped"));
            Assert.That(entries.Single(e => e.GetProperty("EventId").GetInt32() == 8).GetProperty("Message").GetString(),
                Is.EqualTo("metrics served at http://127.0.0.1:9465/metrics (Prometheus text format; no authentication)"));
            Assert.That(entries.Select(e => e.GetProperty("LogLevel").GetString()), Has.All.EqualTo("Information"));
            Assert.That(entries.Select(e => e.GetProperty("Timestamp").GetString()), Has.All.Match(TimestampPattern()));
            Assert.That(entries.Select(e => e.GetProperty("EventId").GetInt32()).Take(3), Is.EqualTo(new[] { 1, 2, 201 }));
            Assert.That(entries[0].GetProperty("State").GetProperty("Version").GetString(), Does.StartWith("egress-host "));
            Assert.That(entries[1].GetProperty("State").GetProperty("Digest").GetString(), Does.Match("^sha256:[0-9a-f]{12}$"));
            Assert.That(entries[2].GetProperty("Message").GetString(), Does.StartWith($"gateway listening on unix:{socket}; limits host.max_streams = "));
            Assert.That(entries[2].GetProperty("State").GetProperty("Tunnel").GetString(), Is.EqualTo($"unix:{socket}"));
        });
    }

    /// <summary>The value of the one sample of <paramref name="metric"/> whose labels include all of <paramref name="labels"/> (summed when several match); null when none does.</summary>
    private static double? Sample(string scrape, string metric, params (string Name, string Value)[] labels)
    {
        double? sum = null;
        foreach (Match match in SampleLine().Matches(scrape))
        {
            if (match.Groups["name"].Value != metric)
            {
                continue;
            }

            var present = LabelPair().Matches(match.Groups["labels"].Value).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
            if (labels.All(label => present.TryGetValue(label.Name, out var value) && value == label.Value))
            {
                sum = (sum ?? 0) + double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture);
            }
        }

        return sum;
    }

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>[^}]*)\})? (?<value>\S+)", RegexOptions.Multiline)]
    private static partial Regex SampleLine();

    [GeneratedRegex("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"")]
    private static partial Regex LabelPair();

    [GeneratedRegex(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")]
    private static partial Regex TimestampPattern();
}
