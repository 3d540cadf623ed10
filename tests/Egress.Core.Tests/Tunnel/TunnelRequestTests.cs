using System.Net;
using Egress.Tunnel;

namespace Egress.Tests.Tunnel;

public sealed class TunnelRequestTests
{
    [Test]
    public void ForTcpKeepsDestinationAndHint()
    {
        var request = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("198.51.100.7"), 443), "api.example.com");

        Assert.Multiple(() =>
        {
            Assert.That(request.Kind, Is.EqualTo(TunnelRequestKind.TcpConnect));
            Assert.That(request.Destination, Is.EqualTo(new IPEndPoint(IPAddress.Parse("198.51.100.7"), 443)));
            Assert.That(request.HostHint, Is.EqualTo("api.example.com"));
        });
    }

    [Test]
    public void ForTcpKeepsIPv6AndDropsScopeId()
    {
        var request = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("fe80::1%3"), 22));

        Assert.That(request.Destination, Is.EqualTo(new IPEndPoint(IPAddress.Parse("fe80::1"), 22)));
    }

    [Test]
    public void ForTcpKeepsV4MappedAddressAsIPv6()
    {
        var request = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("::ffff:10.0.0.1"), 80));

        Assert.That(request.Destination!.Address, Is.EqualTo(IPAddress.Parse("::ffff:10.0.0.1")));
    }

    [Test]
    public void ForTcpTreatsEmptyHintAsNoHint() =>
        Assert.That(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Loopback, 80), "").HostHint, Is.Null);

    [Test]
    public void ForTcpRejectsPortZero() =>
        Assert.That(() => TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Loopback, 0)), Throws.TypeOf<ArgumentOutOfRangeException>());

    [TestCase("bad host")]
    [TestCase("nul\0")]
    [TestCase("caf\u00e9.example")]
    [TestCase("a/b")]
    [TestCase("host:443")]
    public void ForTcpRejectsInvalidHint(string hint) =>
        Assert.That(() => TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Loopback, 80), hint), Throws.ArgumentException.With.Property("ParamName").EqualTo("hostHint"));

    [Test]
    public void ForTcpAcceptsHintOf253AndRejects254()
    {
        var endPoint = new IPEndPoint(IPAddress.Loopback, 80);

        Assert.Multiple(() =>
        {
            Assert.That(TunnelRequest.ForTcp(endPoint, new string('a', 253)).HostHint, Has.Length.EqualTo(253));
            Assert.That(() => TunnelRequest.ForTcp(endPoint, new string('a', 254)), Throws.ArgumentException);
        });
    }

    [Test]
    public void ForDnsHasNoDestination()
    {
        var request = TunnelRequest.ForDns();

        Assert.Multiple(() =>
        {
            Assert.That(request.Kind, Is.EqualTo(TunnelRequestKind.Dns));
            Assert.That(request.Destination, Is.Null);
            Assert.That(request.HostHint, Is.Null);
        });
    }

    [Test]
    public void EqualityComparesAddressPortAndHint()
    {
        var a = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("10.0.0.1"), 443), "x.example");

        Assert.Multiple(() =>
        {
            Assert.That(a, Is.EqualTo(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("10.0.0.1"), 443), "x.example")));
            Assert.That(a, Is.Not.EqualTo(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("10.0.0.2"), 443), "x.example")));
            Assert.That(a, Is.Not.EqualTo(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("10.0.0.1"), 444), "x.example")));
            Assert.That(a, Is.Not.EqualTo(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("10.0.0.1"), 443))));
            Assert.That(a, Is.Not.EqualTo(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("::ffff:10.0.0.1"), 443), "x.example")));
        });
    }
}
