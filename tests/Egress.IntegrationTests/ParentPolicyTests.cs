using System.Net;
using System.Text.RegularExpressions;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// The parent re-checks on its own: a tunnel request sent straight to egress-host's socket (as a compromised
/// enclave could) for a destination outside the allowlist is answered DeniedByPolicy and never dialled. Both sides
/// log the digest of the policy they enforce, so a parent that reads another policy shows it.
/// </summary>
[TestFixture]
public sealed partial class ParentPolicyTests : EgressFixture
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

    [Test]
    public async Task BothHostsLogTheSamePolicyDigestAndAnotherPolicyHasAnother()
    {
        string differentConfig = Path.Combine(Topology.WorkDirectory, "different.toml");
        var destinations = EnclaveConfig.DefaultDestinations.Select(d => d == "198.18.0.10" ? "198.18.0.11" : d).ToArray();
        await File.WriteAllTextAsync(differentConfig, EnclaveConfig.Render(destinations));

        string? hostDigest = LoggedDigest(Deployment.Host);
        string? enclaveDigest = LoggedDigest(Deployment.Enclave);
        var same = await Command.RunAsync(HostBinaries.Enclave("check", "198.18.0.10", "--config", Deployment.ConfigPath), Clients.Timeout);
        var different = await Command.RunAsync(HostBinaries.Enclave("check", "198.18.0.10", "--config", differentConfig), Clients.Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(hostDigest, Is.Not.Null, () => $"egress-host logged no policy line:\n{Deployment.Host.Output}");
            Assert.That(enclaveDigest, Is.EqualTo(hostDigest), () => $"egress-enclave:\n{Deployment.Enclave.Output}\negress-host:\n{Deployment.Host.Output}");
            Assert.That(same.StandardOutput, Does.StartWith($"policy:  {hostDigest} (egress enabled, 3 destinations);"), same.ToString);
            Assert.That(different.StandardOutput, Does.StartWith("policy:  sha256:"), different.ToString);
            Assert.That(different.StandardOutput, Does.Not.Contain(hostDigest ?? "no digest"), different.ToString);
        });
    }

    /// <summary>The digest in a host's start line <c>policy sha256:1a2b3c4d5e6f (egress ..., N destinations); ...</c>.</summary>
    private static string? LoggedDigest(BackgroundProcess process) =>
        process.Lines.Select(line => LoggedPolicy().Match(line)).FirstOrDefault(match => match.Success)?.Groups[1].Value;

    [GeneratedRegex(@"\[2\] policy (sha256:[0-9a-f]{12}) \(")]
    private static partial Regex LoggedPolicy();
}
