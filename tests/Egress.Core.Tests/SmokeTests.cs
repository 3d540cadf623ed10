namespace Egress.Tests;

public sealed class SmokeTests
{
    [Test]
    public void CoreAssemblyLoads() => Assert.That(typeof(Egress.Vsock.VsockEndPoint).Assembly.GetName().Name, Is.EqualTo("Egress.Core"));
}
