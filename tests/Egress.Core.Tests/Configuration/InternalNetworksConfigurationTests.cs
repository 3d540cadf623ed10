using System.Net;
using Egress.Configuration;
using Egress.Hosting;
using Egress.Policy;
using Egress.Tunnel;

namespace Egress.Tests.Configuration;

/// <summary>
/// <c>host.internal_networks</c>. From a security review: a dual-stack VPC's other hosts have global unicast IPv6
/// addresses, so <c>*:5432</c> reached a VPC database at 2600:1f18:abcd:1200::10 while its IPv4 address 10.0.1.10 was
/// denied as private, and a steered AAAA answer for an allowed wildcard name was learned where the same A answer was
/// refused as rebinding. The key makes such networks internal as the built-in ranges are.
/// </summary>
public sealed class InternalNetworksConfigurationTests
{
    private static readonly IPAddress VpcNeighbour = IPAddress.Parse("2600:1f18:abcd:1200::10");

    [Test]
    public void NetworksAndAddressesAreReadOnceEach()
    {
        var configuration = EgressConfiguration.Parse(
            "[host]\ninternal_networks = [\"2600:1f18:abcd:1200::/56\", \"203.0.113.0/24\", \"2600:1f18:abcd:1200::/56\", \"198.51.100.7\", \"2001:db8::5\"]\n", "enclave.toml");

        Assert.That(configuration.Host.InternalNetworks.Select(network => network.ToString()), Is.EqualTo(new[]
        {
            "2600:1f18:abcd:1200::/56", "203.0.113.0/24", "198.51.100.7/32", "2001:db8::5/128",
        }));
    }

    [Test]
    public void WithoutTheKeyThereAreNone() =>
        Assert.That(EgressConfiguration.Parse("[host]\n", "enclave.toml").Host.InternalNetworks, Is.Empty);

    [TestCase("\"2600:1f18:abcd:1200::/56:443\"", "enclave.toml:2:22: error: \"2600:1f18:abcd:1200::/56:443\" is not an IP address or network without a port (e.g. \"2600:1f18:abcd:1200::/56\", \"10.0.0.0/16\") (key 'host.internal_networks')", TestName = "A port")]
    [TestCase("\"10.0.1.0/16\"", "enclave.toml:2:22: error: invalid network \"10.0.1.0/16\": has host bits set after /16 (did you mean \"10.0.0.0/16\"?) (key 'host.internal_networks')", TestName = "Host bits")]
    [TestCase("\"*.internal.example\"", "enclave.toml:2:22: error: \"*.internal.example\" is not an IP address or network without a port (e.g. \"2600:1f18:abcd:1200::/56\", \"10.0.0.0/16\") (key 'host.internal_networks')", TestName = "A name")]
    [TestCase("\"::/0\"", "enclave.toml:2:22: error: \"::/0\": that network would make every destination internal (key 'host.internal_networks')", TestName = "Everything")]
    [TestCase("\"0.0.0.0/00\"", "enclave.toml:2:22: error: \"0.0.0.0/00\": that network would make every destination internal (key 'host.internal_networks')", TestName = "Everything, written /00")]
    [TestCase("\"::ffff:0:0/96\"", "enclave.toml:2:22: error: \"::ffff:0:0/96\": that network (every IPv4 address, IPv4-mapped) would make every IPv4 destination internal (key 'host.internal_networks')", TestName = "Every IPv4 address, mapped")]
    [TestCase("\"10.0.0.0/33\"", "enclave.toml:2:22: error: invalid network \"10.0.0.0/33\": prefix length \"/33\" is not a number from 0 to 32 (key 'host.internal_networks')", TestName = "A prefix too long")]
    [TestCase("16", "enclave.toml:2:22: error: expected a string, found an integer (key 'host.internal_networks')", TestName = "Not a string")]
    public void MistakesAreLocated(string element, string expected)
    {
        var error = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse($"[host]\ninternal_networks = [{element}]\n", "enclave.toml"));

        Assert.That(error!.Message, Is.EqualTo(expected));
    }

    [Test]
    public void AllowAllNoLongerReachesAnInternalNetwork()
    {
        var without = Policy("destinations = [\"*:5432\"]", internalNetworks: null);
        var with = Policy("destinations = [\"*:5432\"]", "\"2600:1f18:abcd:1200::/56\"");

        PolicyDecision denied = with.CheckDestination(new IPEndPoint(VpcNeighbour, 5432));
        Assert.Multiple(() =>
        {
            Assert.That(without.CheckDestination(new IPEndPoint(VpcNeighbour, 5432)).IsAllowed, Is.True, "the review's finding, without the key");
            Assert.That(denied.IsAllowed, Is.False);
            Assert.That(denied.Reason, Is.EqualTo(DecisionReason.InternalRange));
            Assert.That(denied.ToString(), Does.Contain("internal network 2600:1f18:abcd:1200::/56 ([host] internal_networks)"));
            Assert.That(with.CheckDestination(new IPEndPoint(IPAddress.Parse("2600:1f18:abcd:1300::10"), 5432)).IsAllowed, Is.True, "outside the /56");
        });
    }

    [Test]
    public void ADnsAnswerInsideAnInternalNetworkIsRefusedAsRebinding()
    {
        var policy = Policy("destinations = [\"*.partner.test:443\"]", "\"2600:1f18:abcd:1200::/56\"");

        LearnResult result = policy.Learn("x.partner.test", VpcNeighbour, TimeSpan.FromMinutes(5));

        Assert.Multiple(() =>
        {
            Assert.That(result.Outcome, Is.EqualTo(LearnOutcome.InternalRange));
            Assert.That(result.ToString(), Is.EqualTo("not learned: internal range internal network 2600:1f18:abcd:1200::/56 ([host] internal_networks) (DNS rebinding protection)"));
            Assert.That(policy.CheckDestination(new IPEndPoint(VpcNeighbour, 443)).IsAllowed, Is.False);
        });
    }

    [Test]
    public void AnEntryThatNamesTheAddressOpensItAsItOpensAPrivateOne()
    {
        var policy = Policy("destinations = [\"*:5432\", \"[2600:1f18:abcd:1200::10]:5432\"]", "\"2600:1f18:abcd:1200::/56\"");

        PolicyDecision decision = policy.CheckDestination(new IPEndPoint(VpcNeighbour, 5432));

        Assert.That((decision.IsAllowed, decision.Reason), Is.EqualTo((true, DecisionReason.StaticEntry)));
    }

    /// <summary>From a review: an entry broader than an internal network opens it, as one broader than a private range
    /// does, and was not warned about as that one is.</summary>
    [Test]
    public void AnEntryBroaderThanAnInternalNetworkOpensItAndIsWarnedAbout()
    {
        var configuration = EgressConfiguration.Parse(
            "[egress]\nenabled = true\ndestinations = [\"2600::/12:5432\", \"2600:1f18:abcd:1200::/56:22\"]\n[host]\ninternal_networks = [\"2600:1f18:abcd:1200::/56\"]\n", "enclave.toml");
        var policy = configuration.CreatePolicy(configuration.CreateCache());

        Assert.Multiple(() =>
        {
            Assert.That(policy.CheckDestination(new IPEndPoint(VpcNeighbour, 5432)).Reason, Is.EqualTo(DecisionReason.StaticEntry), "an explicit entry is trusted");
            Assert.That(configuration.GetWarnings(), Is.EqualTo(new[]
            {
                "enclave.toml:3:17: warning: destination \"2600::/12:5432\" also allows internal ranges it does not name: internal network 2600:1f18:abcd:1200::/56 ([host] internal_networks); if that is meant, list them as entries of their own (key 'egress.destinations')",
            }), "the entry that is the network names it");
        });
    }

    /// <summary>An IPv4 internal network in an IPv6 form that carries it (NAT64, 6to4) is internal too, as the built-in
    /// IPv4 ranges are.</summary>
    [TestCase("64:ff9b::cb00:710a")]
    [TestCase("2002:cb00:710a::1")]
    [TestCase("::ffff:203.0.113.10")]
    public void AnIPv4InternalNetworkIsInternalInTheIPv6FormsThatCarryIt(string address)
    {
        var policy = Policy("destinations = [\"*\"]", "\"203.0.113.0/24\"");

        Assert.That(policy.CheckDestination(new IPEndPoint(IPAddress.Parse(address), 443)).Reason, Is.EqualTo(DecisionReason.InternalRange));
    }

    /// <summary>A <c>[[host.enclaves]]</c> file's policy takes egress-host's own file's internal networks, not its own
    /// (a mapped file's other sections are not used).</summary>
    [Test]
    public void AMappedEnclavesPolicyTakesTheHostFilesInternalNetworks()
    {
        string directory = Directory.CreateTempSubdirectory("egress-internal-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(directory, "a.toml"), "[egress]\nenabled = true\ndestinations = [\"*:5432\"]\n[host]\ninternal_networks = [\"2001:db8::/32\"]\n");
            var configuration = EgressConfiguration.Parse(
                "[host]\ninternal_networks = [\"2600:1f18:abcd:1200::/56\"]\n[[host.enclaves]]\ncid = \"any\"\nconfig = \"a.toml\"\n", Path.Combine(directory, "enclave.toml"));

            var enclaves = EgressServiceCollectionExtensions.LoadHostEnclaves(configuration, TunnelEndpoint.Parse("unix:" + Path.Combine(directory, "t.sock")), warning: null);

            Assert.Multiple(() =>
            {
                Assert.That(enclaves[0].Policy.CheckDestination(new IPEndPoint(VpcNeighbour, 5432)).Reason, Is.EqualTo(DecisionReason.InternalRange));
                Assert.That(enclaves[0].Policy.CheckDestination(new IPEndPoint(IPAddress.Parse("2001:db8::10"), 5432)).IsAllowed, Is.True);
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static EgressPolicy Policy(string egress, string? internalNetworks)
    {
        string host = internalNetworks is null ? string.Empty : $"[host]\ninternal_networks = [{internalNetworks}]\n";
        var configuration = EgressConfiguration.Parse($"[egress]\nenabled = true\n{egress}\n{host}", "enclave.toml");
        return configuration.CreatePolicy(configuration.CreateCache());
    }
}
