using System.Text;
using Egress.Configuration;
using Egress.Hosting;
using Microsoft.Extensions.Logging;

namespace Egress.Tests.Hosting;

/// <summary>
/// The two lines every start of a host begins with (<see cref="HostRuntime.LogStart"/>): the version, and the policy
/// digest operators compare with the other side's; with <c>[[host.enclaves]]</c>, egress-host's file's own policy
/// decides no stream, and the second line points at each entry's line instead.
/// </summary>
public sealed class HostStartLogTests
{
    private static readonly TimeSpan FlushTimeout = TimeSpan.FromSeconds(30);

    private static readonly PolicyDigest Unused = EgressConfiguration.Parse("[egress]\nenabled = false\n", "h2.toml").GetPolicyDigest();

    [Test]
    public void TheSecondLineIsThePolicyDigestToCompare()
    {
        string[] lines = LogStart(policyPerEnclave: false);

        Assert.That(lines, Has.Length.EqualTo(2), string.Join('\n', lines));
        Assert.That(lines[1], Does.EndWith($"info: Egress.Host[2] policy {Unused} (egress disabled, 0 destinations); the enclave and the parent must log the same"));
    }

    // Before, egress-host logged the digest of its file's own (empty) [egress] as the one the enclave must log, while
    // every stream was decided by a mapped file's policy.
    [Test]
    public void WithAPolicyPerEnclaveTheFilesOwnDigestIsNotLoggedAsTheOneToCompare()
    {
        string[] lines = LogStart(policyPerEnclave: true);

        Assert.That(lines, Has.Length.EqualTo(2), string.Join('\n', lines));
        Assert.Multiple(() =>
        {
            Assert.That(lines, Has.None.Contains(Unused.ToString()));
            Assert.That(lines, Has.None.Contains("must log the same"));
            Assert.That(lines[1], Does.EndWith("info: Egress.Host[4] policy per enclave ([[host.enclaves]]): each \"enclave ...: policy ...\" line below is what that enclave must log; this file's own [egress] decides no stream"));
        });
    }

    private static string[] LogStart(bool policyPerEnclave)
    {
        var stdout = new MemoryStream();
        using (var host = HostRuntime.CreateBuilder(LogLevel.Information, json: false, TimeSpan.FromSeconds(1), () => stdout, FlushTimeout).Build())
        {
            HostRuntime.LogStart(host, "Egress.Host", Unused, policyPerEnclave);
        }

        return Encoding.UTF8.GetString(stdout.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}
