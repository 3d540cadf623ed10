using System.Net;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// <c>[[host.enclaves]]</c> with the real egress-host over its <c>unix:</c> tunnel, which has no peer CID: the
/// <c>cid = "any"</c> entry's file decides every stream, not the file egress-host was started with (which the enclave
/// runs with). Mapping by a real CID is exercised by the VM suite (<c>Vm/VsockVmTests</c>), and refusal of an
/// unmapped CID by the gateway's unit tests through its peer-CID seam.
/// </summary>
[TestFixture]
public sealed class HostEnclavesTests : EgressFixture
{
    private const string AnyConfig = "any-enclave.toml";

    internal override string ConfigToml =>
        EnclaveConfig.Render([$"{WorldAddresses.Allowed}"]) + $"\n[[host.enclaves]]\ncid = \"any\"\nconfig = \"{AnyConfig}\"\n";

    internal override Task PrepareAsync(Topology topology) =>
        File.WriteAllTextAsync(Path.Combine(topology.WorkDirectory, AnyConfig), $"[egress]\nenabled = true\ndestinations = [\"{WorldAddresses.Unlisted}\"]\n");

    [Test]
    public async Task TheAnyEntrysFileDecidesUnixStreams()
    {
        var http = await Clients.CurlAsync(Topology.Enclave, $"http://{WorldAddresses.Allowed}/");
        var parentDenied = await LogLineAsync(Deployment.Host, $"connection to {WorldAddresses.Allowed}:{WorldPorts.Http}", "denied");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var mapped = await TunnelProbe.RequestAsync(Deployment.TunnelSocketPath, new IPEndPoint(WorldAddresses.Unlisted, WorldPorts.Http), cts.Token);
        var started = await LogLineAsync(Deployment.Host, "enclave any CID: policy sha256:", $"1 destination) from {Path.Combine(Topology.WorkDirectory, AnyConfig)}");

        Assert.Multiple(() =>
        {
            Assert.That(Clients.RefusedOrReset, Does.Contain(http.ExitCode), http.ToString);
            Assert.That(parentDenied, Is.Not.Null, () => $"the parent did not deny what only the enclave's file allows:\n{Deployment.Host.Output}");
            Assert.That(mapped.Status, Is.EqualTo(TunnelProbe.StatusOk), mapped.Detail);
            Assert.That(started, Is.Not.Null, () => $"egress-host did not log the entry's policy:\n{Deployment.Host.Output}");
            Assert.That(World.Nginx.WasReachedOn(WorldAddresses.Allowed), Is.False);
        });
    }
}
