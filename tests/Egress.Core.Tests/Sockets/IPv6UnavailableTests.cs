using System.Net;
using System.Net.Sockets;
using Egress.Sockets;

namespace Egress.Core.Tests.Sockets;

public sealed class IPv6UnavailableTests
{
    [TestCase("[::1]:53", SocketError.AddressNotAvailable, true)] // IPv6 disabled: lo has no ::1
    [TestCase("[::1]:53", SocketError.AddressFamilyNotSupported, true)] // compiled out
    [TestCase("[2001:db8::7]:53", SocketError.AddressFamilyNotSupported, true)]
    [TestCase("[2001:db8::7]:53", SocketError.AddressNotAvailable, false)] // no interface has it: a configuration error
    [TestCase("[fd00::1]:3128", SocketError.AddressNotAvailable, false)]
    [TestCase("[::1]:53", SocketError.AddressAlreadyInUse, false)]
    [TestCase("[::1]:53", SocketError.AccessDenied, false)]
    [TestCase("127.0.0.1:53", SocketError.AddressNotAvailable, false)]
    [TestCase("127.0.0.1:53", SocketError.AddressFamilyNotSupported, false)]
    public void OnlyAMissingFamilyOrAMissingLoopbackMeansIPv6IsUnavailable(string address, SocketError error, bool unavailable) =>
        Assert.That(IPv6Unavailable.Explains(IPEndPoint.Parse(address), new SocketException((int)error)), Is.EqualTo(unavailable));
}
