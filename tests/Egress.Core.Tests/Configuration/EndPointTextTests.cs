using System.Net;
using Egress.Configuration;
using FsCheck;
using FsCheck.Fluent;

namespace Egress.Tests.Configuration;

public sealed class EndPointTextTests
{
    [TestCase("127.0.0.1:4444", "127.0.0.1", 4444)]
    [TestCase("0.0.0.0:1", "0.0.0.0", 1)]
    [TestCase("[::1]:4444", "::1", 4444)]
    [TestCase("[::]:65535", "::", 65535)]
    [TestCase("[::ffff:10.0.0.1]:53", "::ffff:10.0.0.1", 53)]
    public void ListenAddressIsParsed(string text, string address, int port)
    {
        Assert.That(EndPointText.TryParseListen(text, out IPEndPoint? endPoint, out string? problem), Is.True, problem);
        Assert.That(endPoint, Is.EqualTo(new IPEndPoint(IPAddress.Parse(address), port)));
    }

    [TestCase("10.0.0.2", "10.0.0.2", 53)]
    [TestCase("10.0.0.2:5353", "10.0.0.2", 5353)]
    [TestCase("2001:db8::1", "2001:db8::1", 53)]
    [TestCase("[2001:db8::1]", "2001:db8::1", 53)]
    [TestCase("[2001:db8::1]:54", "2001:db8::1", 54)]
    public void UpstreamIsParsedWithPort53ByDefault(string text, string address, int port)
    {
        Assert.That(EndPointText.TryParseUpstream(text, out IPEndPoint? endPoint, out string? problem), Is.True, problem);
        Assert.That(endPoint, Is.EqualTo(new IPEndPoint(IPAddress.Parse(address), port)));
    }

    [TestCase("", "not an IP address")]
    [TestCase(":53", "not an IP address")]
    [TestCase("10.0.0.2:", "port must be a number between 1 and 65535")]
    [TestCase("10.0.0.2: 53", "port must be a number between 1 and 65535")]
    [TestCase("010.0.0.2", "not a dotted-quad IPv4 address")]
    [TestCase("10", "not a dotted-quad IPv4 address")]
    public void BadUpstreamIsRejectedWithItsProblem(string text, string expected)
    {
        Assert.That(EndPointText.TryParseUpstream(text, out IPEndPoint? endPoint, out string? problem), Is.False);
        Assert.That((endPoint, problem), Is.EqualTo(((IPEndPoint?)null, expected)));
    }

    [Test]
    public void FormattedIPv4EndPointsRoundTrip() =>
        Prop.ForAll<uint, ushort>((address, port) => RoundTrips(new IPEndPoint(new IPAddress(address), port))).QuickCheckThrowOnFailure();

    [Test]
    public void FormattedIPv6EndPointsRoundTrip() =>
        Prop.ForAll<ulong, ulong, ushort>((high, low, port) =>
        {
            var bytes = new byte[16];
            BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), high);
            BitConverter.TryWriteBytes(bytes.AsSpan(8, 8), low);
            return RoundTrips(new IPEndPoint(new IPAddress(bytes), port));
        }).QuickCheckThrowOnFailure();

    // Port 0 is refused (a listener needs a fixed port); every other formatted endpoint reads back equal.
    private static bool RoundTrips(IPEndPoint expected)
    {
        bool parsed = EndPointText.TryParseListen(expected.ToString(), out IPEndPoint? actual, out _);
        return expected.Port == 0 ? !parsed : parsed && expected.Equals(actual);
    }
}
