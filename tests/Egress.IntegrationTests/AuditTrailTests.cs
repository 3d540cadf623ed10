using System.Net;
using System.Text.Json;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// Issue 14 item 5: one audit record per connection on each host (<c>[enclave] audit_log</c>, <c>[host] audit_log</c>),
/// JSON lines that join on the connection id both hosts log (tunnel v2), with the destination, the name and entry it
/// was allowed through, the decision, bytes each way and the first cause of the close.
/// </summary>
[TestFixture]
public sealed class AuditTrailTests : EgressFixture
{
    private const string Name = "www.audit.test";
    private static readonly string Folder = Directory.CreateTempSubdirectory("egress-audit-").FullName;
    private static readonly string EnclaveAudit = Path.Combine(Folder, "enclave.jsonl");
    private static readonly string HostAudit = Path.Combine(Folder, "host.jsonl");

    internal override string ConfigToml =>
        EnclaveConfig.Render([.. EnclaveConfig.DefaultDestinations, $"{Name}:{WorldPorts.Http}"])
            .Replace("[host]\n", $"[host]\naudit_log = \"{HostAudit}\"\n", StringComparison.Ordinal)
        + $"\n[enclave]\naudit_log = \"{EnclaveAudit}\"\n";

    internal override async Task PrepareAsync(Topology topology)
    {
        await topology.StartDnsmasqAsync(DnsmasqRecord.Host(Name, WorldAddresses.Unlisted));
        topology.SetEnclaveNameserver(IPAddress.Loopback);
    }

    [OneTimeTearDown]
    public void RemoveFolder() => Directory.Delete(Folder, recursive: true);

    [Test]
    public async Task AnAllowedConnectionHasOneRecordOnEachHostJoinedByItsConnectionId()
    {
        var http = await Clients.CurlAsync(Topology.Enclave, $"http://{Name}/", "-o", "/dev/null", "-w", "%{http_code} %{size_download}");
        string destination = $"{WorldAddresses.Unlisted}:{WorldPorts.Http}";
        JsonElement enclave = await RecordAsync(EnclaveAudit, destination);
        JsonElement parent = await RecordAsync(HostAudit, destination);

        Assert.Multiple(() =>
        {
            Assert.That(http.StandardOutput, Does.StartWith("200 "), http.ToString);
            Assert.That(enclave.GetProperty("connection_id").GetString(), Does.Match("^[0-9a-f]{16}$"));
            Assert.That(parent.GetProperty("connection_id").GetString(), Is.EqualTo(enclave.GetProperty("connection_id").GetString()), "both hosts' records join");
            Assert.That((enclave.GetProperty("side").GetString(), parent.GetProperty("side").GetString()), Is.EqualTo(("enclave", "parent")));
            Assert.That(enclave.GetProperty("name").GetString(), Is.EqualTo(Name));
            Assert.That(parent.GetProperty("name").GetString(), Is.EqualTo(Name), "the parent learned the address from the name too");
            Assert.That(parent.GetProperty("host_hint").GetString(), Is.EqualTo(Name), "and the enclave's request named it");
            Assert.That((enclave.GetProperty("decision").GetString(), enclave.GetProperty("reason").GetString()), Is.EqualTo(("allowed", "learned")));
            Assert.That(enclave.GetProperty("outcome").GetString(), Is.EqualTo("allowed"));
            Assert.That(enclave.GetProperty("bytes_in").GetInt64(), Is.GreaterThan(0));
            Assert.That(parent.GetProperty("bytes_in").GetInt64(), Is.EqualTo(enclave.GetProperty("bytes_in").GetInt64()), "the same bytes, counted on each host");
            Assert.That(parent.GetProperty("bytes_out").GetInt64(), Is.EqualTo(enclave.GetProperty("bytes_out").GetInt64()));
            Assert.That(enclave.GetProperty("close_cause").GetString(), Does.StartWith("BothCompleted (END sent FIN, received FIN)"));
        });
    }

    [Test]
    public async Task ADeniedConnectionIsRecordedByTheEnclaveWithItsReason()
    {
        var http = await Clients.CurlAsync(Topology.Enclave, $"http://{WorldAddresses.Denied}/");
        JsonElement enclave = await RecordAsync(EnclaveAudit, $"{WorldAddresses.Denied}:{WorldPorts.Http}");

        Assert.Multiple(() =>
        {
            Assert.That(Clients.RefusedOrReset, Does.Contain(http.ExitCode), http.ToString);
            Assert.That((enclave.GetProperty("decision").GetString(), enclave.GetProperty("outcome").GetString()), Is.EqualTo(("denied", "denied")));
            Assert.That(enclave.GetProperty("decision_text").GetString(), Does.StartWith("denied: "));
            Assert.That(enclave.TryGetProperty("connection_id", out _), Is.False, "no tunnel stream was opened");
            Assert.That(File.ReadAllText(HostAudit), Does.Not.Contain($"{WorldAddresses.Denied}:{WorldPorts.Http}"), "the parent never saw it");
        });
    }

    /// <summary>The record with this destination, once the host has written it (records trail the client's exit).</summary>
    private static async Task<JsonElement> RecordAsync(string file, string destination)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            if (File.Exists(file))
            {
                foreach (string line in await File.ReadAllLinesAsync(file))
                {
                    using var record = JsonDocument.Parse(line);
                    if (record.RootElement.GetProperty("destination").GetString() == destination)
                    {
                        return record.RootElement.Clone();
                    }
                }
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"no record for {destination} in {file}:\n{(File.Exists(file) ? await File.ReadAllTextAsync(file) : "(no file)")}");
            }

            await Task.Delay(100);
        }
    }
}
