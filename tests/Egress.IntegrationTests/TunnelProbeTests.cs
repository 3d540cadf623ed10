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
}
