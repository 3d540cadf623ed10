using System.Net;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// Apps that resolve on their own terms, with the real rules from <c>egress-enclave rules --apply</c>:
/// <list type="bullet">
/// <item>DNS sent to a resolver other than 127.0.0.1 (a VPC resolver, 8.8.8.8, a library ignoring resolv.conf), over
/// UDP or TCP, IPv4 or IPv6, still goes through the forwarder and its name policy, even where an allowlisted CIDR covers
/// that resolver (here 198.18.0.0/24 covers the world's dnsmasq at 198.18.0.53): port 53 is never relayed unchecked.</item>
/// <item>glibc's <c>getaddrinfo</c> with <c>AI_ADDRCONFIG</c> (Node's <c>dns.lookup</c> with <c>ADDRCONFIG</c>,
/// <c>getent ahostsv4</c>) sees both families configured in an enclave that has only <c>lo</c>.</item>
/// </list>
/// </summary>
[TestFixture]
public sealed class ResolverTransparencyTests : EgressFixture
{
    private const string Www = "www.allowed.test";
    private const string V6 = "v6.allowed.test";
    private const string Dual = "dual.allowed.test";
    private const string Denied = "denied.test";

    private DnsmasqServer? dnsmasq;

    private DnsmasqServer Dnsmasq => dnsmasq ?? throw new InvalidOperationException("no dnsmasq");

    internal override string ConfigToml => EnclaveConfig.Render([Www, V6, Dual, "198.18.0.0/24"]);

    internal override async Task PrepareAsync(Topology topology)
    {
        dnsmasq = await topology.StartDnsmasqAsync(
        [
            DnsmasqRecord.Host(Www, WorldAddresses.Allowed),
            DnsmasqRecord.Host(V6, WorldAddresses.AllowedV6),
            DnsmasqRecord.Host(Dual, WorldAddresses.Allowed),
            DnsmasqRecord.Host(Dual, WorldAddresses.AllowedV6),
            DnsmasqRecord.Host(Denied, WorldAddresses.Denied),
        ]);
        topology.SetEnclaveNameserver(IPAddress.Loopback);
    }

    [TestCase("+notcp", "UDP")]
    [TestCase("+tcp", "TCP")]
    public async Task AQueryToAnotherIpv4ResolverIsAnsweredThroughTheForwarder(string transportOption, string transport)
    {
        var dig = await Clients.DigAsync(Topology.Enclave, $"@{WorldAddresses.Dns}", transportOption, Www);
        var relayed = await LogLineAsync(Deployment.Host, $"connection to {WorldAddresses.Dns}:53");
        Assert.Multiple(() =>
        {
            Assert.That(dig.Status, Is.EqualTo("NOERROR"), dig.ToString);
            Assert.That(dig.Transport, Is.EqualTo(transport), dig.ToString);
            Assert.That(dig.AnswerData, Is.EqualTo(new[] { "198.18.0.10" }), dig.ToString);
            Assert.That(dig.Command.StandardOutput, Does.Contain($"SERVER: {WorldAddresses.Dns}#53"), "the app sees the resolver it asked");
            Assert.That(relayed, Is.Null, "DNS was relayed as an ordinary TCP connection, around the name policy");
        });
    }

    [TestCase("+notcp")]
    [TestCase("+tcp")]
    public async Task ADeniedNameSentToAResolverInAnAllowedCidrIsDeniedAndNeverReachesIt(string transportOption)
    {
        // Before: UDP vanished (a 5 s timeout); TCP was an ordinary connection to an allowed address, relayed to
        // dnsmasq, which answered the denied name.
        var dig = await Clients.DigAsync(Topology.Enclave, $"@{WorldAddresses.Dns}", transportOption, Denied);
        Assert.Multiple(() =>
        {
            Assert.That(dig.Status, Is.EqualTo("NXDOMAIN"), dig.ToString);
            Assert.That(dig.Command.StandardOutput, Does.Contain("; EDE: 15 (Blocked)"), dig.ToString);
            Assert.That(Dnsmasq.WasAsked(Denied), Is.False, "a denied name reached the upstream");
        });
    }

    [TestCase("+notcp", "UDP")]
    [TestCase("+tcp", "TCP")]
    public async Task AQueryToAnIpv6ResolverIsAnsweredThroughTheForwarder(string transportOption, string transport)
    {
        var dig = await Clients.DigAsync(Topology.Enclave, $"@{WorldAddresses.AllowedV6}", transportOption, "AAAA", V6);
        Assert.Multiple(() =>
        {
            Assert.That(dig.Status, Is.EqualTo("NOERROR"), dig.ToString);
            Assert.That(dig.Transport, Is.EqualTo(transport), dig.ToString);
            Assert.That(dig.AnswerData, Is.EqualTo(new[] { "2001:db8::10" }), dig.ToString);
        });
    }

    [Test]
    public async Task AStubResolverOnAnotherLoopbackAddressIsServedByTheForwarder()
    {
        // Images built for systemd-resolved name 127.0.0.53 in resolv.conf; nothing listens there in an enclave.
        var dig = await Clients.DigAsync(Topology.Enclave, "@127.0.0.53", Www);
        Assert.That(dig.AnswerData, Is.EqualTo(new[] { "198.18.0.10" }), dig.ToString);
    }

    [TestCase("AF_INET", Www, "198.18.0.10")]
    [TestCase("AF_INET6", V6, "2001:db8::10")]
    public async Task GetaddrinfoWithAddrconfigResolvesEachFamily(string family, string name, string expected)
    {
        // Before: glibc saw no address but loopback in either family and failed at once without a query.
        var script = $"import socket\nr = socket.getaddrinfo('{name}', 443, socket.{family}, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)\n"
            + "print(' '.join(sorted({a[4][0] for a in r})))\n";
        var lookup = await Command.RunInNamespaceAsync(Topology.Enclave, Clients.Timeout, "python3", "-c", script);
        Assert.Multiple(() =>
        {
            Assert.That(lookup.ExitCode, Is.Zero, lookup.ToString);
            Assert.That(lookup.StandardOutput.Trim(), Is.EqualTo(expected), lookup.ToString);
        });
    }

    [Test]
    public async Task GetaddrinfoWithAddrconfigAndNoFamilyGivesBothFamilies()
    {
        var script = $"import socket\nr = socket.getaddrinfo('{Dual}', 443, 0, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)\n"
            + "print(' '.join(sorted({a[4][0] for a in r})))\n";
        var lookup = await Command.RunInNamespaceAsync(Topology.Enclave, Clients.Timeout, "python3", "-c", script);
        Assert.That(lookup.StandardOutput.Trim(), Is.EqualTo("198.18.0.10 2001:db8::10"), lookup.ToString);
    }

    [Test]
    public async Task GetentAhostsv4PrintsTheAddress()
    {
        var getent = await Command.RunInNamespaceAsync(Topology.Enclave, Clients.Timeout, "getent", "ahostsv4", Www);
        Assert.Multiple(() =>
        {
            Assert.That(getent.ExitCode, Is.Zero, getent.ToString);
            Assert.That(getent.StandardOutput, Does.StartWith("198.18.0.10 "), getent.ToString);
        });
    }

    [Test]
    public async Task NodeDnsLookupWithAddrconfigResolves()
    {
        var script = $"require('dns').lookup('{Www}', {{ family: 4, hints: require('dns').ADDRCONFIG }}, (e, a) => {{ console.log(e ? 'error ' + e.code : a); process.exit(e ? 2 : 0); }});";
        var lookup = await Command.RunInNamespaceAsync(Topology.Enclave, Clients.Timeout, "node", "-e", script);
        Assert.Multiple(() =>
        {
            Assert.That(lookup.ExitCode, Is.Zero, lookup.ToString);
            Assert.That(lookup.StandardOutput.Trim(), Is.EqualTo("198.18.0.10"), lookup.ToString);
        });
    }
}
