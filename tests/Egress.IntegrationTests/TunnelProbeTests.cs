using System.Net;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>The harness's own tunnel v1 encoder, so a parent test can only fail for the parent's reasons.</summary>
[TestFixture]
public sealed class TunnelProbeTests
{
    [Test]
    public void AnIpv4TcpRequestHasTheV1Layout()
    {
        var request = TunnelProbe.TcpRequest(new IPEndPoint(IPAddress.Parse("169.254.169.254"), 80));
        Assert.That(Convert.ToHexStringLower(request), Is.EqualTo("01" + "01" + "0008" + "04" + "a9fea9fe" + "0050" + "00"));
    }

    [Test]
    public void AHostHintFollowsItsLength()
    {
        var request = TunnelProbe.TcpRequest(new IPEndPoint(IPAddress.Parse("198.51.100.7"), 443), "api.example.com");
        Assert.That(
            Convert.ToHexStringLower(request),
            Is.EqualTo("01" + "01" + "0017" + "04" + "c6336407" + "01bb" + "0f" + Convert.ToHexStringLower("api.example.com"u8)));
    }
}
