using System.Net;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// A DNS forwarder on a port other than 53 (<c>dns_listen = ["127.0.0.1:5353"]</c>), with the real rules: resolv.conf
/// cannot name a port, so apps ask 127.0.0.1:53. A trial found that address's port 53 left out of the redirect (the
/// rules leave the forwarder's own address alone) and every such query refused; it is redirected to the forwarder now.
/// </summary>
[TestFixture]
public sealed class DnsListenPortTests : EgressFixture
{
    private const string Name = "port.allowed.test";

    internal override string ConfigToml => EnclaveConfig.Render([Name]) + """

        [enclave]
        dns_listen = ["127.0.0.1:5353", "[::1]:5353"]
        """;

    internal override int DnsListenPort => 5353;

    internal override async Task PrepareAsync(Topology topology)
    {
        await topology.StartDnsmasqAsync(DnsmasqRecord.Host(Name, WorldAddresses.Unlisted), DnsmasqRecord.Host("other.test", WorldAddresses.Allowed));
        topology.SetEnclaveNameserver(IPAddress.Loopback);
    }

    [TestCase("127.0.0.1")]
    [TestCase("::1")]
    [TestCase("198.18.0.53")]
    public async Task QueriesToPort53OfAnyAddressReachTheForwarder(string server)
    {
        var allowed = await Clients.DigAsync(Topology.Enclave, $"@{server}", Name);
        var denied = await Clients.DigAsync(Topology.Enclave, $"@{server}", "other.test");

        Assert.Multiple(() =>
        {
            Assert.That((allowed.Status, allowed.AnswerData), Is.EqualTo(("NOERROR", new[] { WorldAddresses.Unlisted.ToString() })), allowed.ToString);
            Assert.That(denied.Status, Is.EqualTo("NXDOMAIN"), "the forwarder's answer, not the upstream's: " + denied);
        });
    }
}
