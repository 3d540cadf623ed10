using System.Net;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// The parent re-checks on its own: a tunnel request sent straight to egress-host's socket (as a compromised
/// enclave could) for a destination outside the allowlist is answered DeniedByPolicy and never dialled.
/// </summary>
[TestFixture]
public sealed class ParentPolicyTests : EgressFixture
{
    [TestCase("198.18.0.99", 80)]
    [TestCase("169.254.169.254", 80)]
    public async Task ATunnelRequestForADeniedDestinationIsDeniedByThePolicyOfTheParent(string address, int port)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var response = await TunnelProbe.RequestAsync(Deployment.TunnelSocketPath, new IPEndPoint(IPAddress.Parse(address), port), cts.Token);
        var logLine = await LogLineAsync(Deployment.Host, "denied", $"{address}:{port}");
        Assert.Multiple(() =>
        {
            Assert.That(response.Version, Is.EqualTo(TunnelProbe.Version));
            Assert.That(response.Status, Is.EqualTo(TunnelProbe.StatusDeniedByPolicy), () => $"detail: {response.Detail}");
            Assert.That(logLine, Is.Not.Null, () => $"no egress-host log line names {address}:{port} as denied:\n{Deployment.Host.Output}");
            Assert.That(World.Nginx.WasReachedOn(IPAddress.Parse(address)), Is.False, "the parent dialled a denied destination");
        });
    }

}
