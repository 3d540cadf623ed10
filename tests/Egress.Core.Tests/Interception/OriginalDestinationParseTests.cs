using System.Net;
using System.Net.Sockets;
using Egress.Interception;
using FsCheck;
using FsCheck.Fluent;

namespace Egress.Tests.Interception;

public sealed class OriginalDestinationParseTests
{
    [Test]
    public void ParsesSockaddrIn()
    {
        byte[] sockaddr = SockaddrIn(port: 0x1151, 198, 18, 0, 10);

        Assert.That(OriginalDestination.TryParseSockaddr(sockaddr, out IPEndPoint? endPoint), Is.True);
        Assert.That(endPoint, Is.EqualTo(new IPEndPoint(IPAddress.Parse("198.18.0.10"), 4433)));
        Assert.That(endPoint!.AddressFamily, Is.EqualTo(AddressFamily.InterNetwork));
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(443)]
    [TestCase(65535)]
    public void PortIsBigEndian(int port)
    {
        Assert.That(OriginalDestination.TryParseSockaddr(SockaddrIn(port, 10, 0, 0, 1), out IPEndPoint? endPoint), Is.True);
        Assert.That(endPoint!.Port, Is.EqualTo(port));
    }

    [Test]
    public void ParsesSockaddrIn6WithScopeId()
    {
        IPAddress address = IPAddress.Parse("fe80::1:2:3:4");
        byte[] sockaddr = SockaddrIn6(port: 587, address, scopeId: 7, flowInfo: 0x12345);

        Assert.That(OriginalDestination.TryParseSockaddr(sockaddr, out IPEndPoint? endPoint), Is.True);
        Assert.That(endPoint!.Address, Is.EqualTo(IPAddress.Parse("fe80::1:2:3:4%7")));
        Assert.That(endPoint.Address.ScopeId, Is.EqualTo(7));
        Assert.That(endPoint.Port, Is.EqualTo(587));
    }

    [Test]
    public void ParsesSockaddrIn6()
    {
        byte[] sockaddr = SockaddrIn6(port: 443, IPAddress.Parse("2001:db8::10"), scopeId: 0, flowInfo: 0);

        Assert.That(OriginalDestination.TryParseSockaddr(sockaddr, out IPEndPoint? endPoint), Is.True);
        Assert.That(endPoint, Is.EqualTo(new IPEndPoint(IPAddress.Parse("2001:db8::10"), 443)));
    }

    [Test]
    public void IPv4MappedSockaddrIn6ComesOutAsPlainIPv4()
    {
        byte[] sockaddr = SockaddrIn6(port: 25, IPAddress.Parse("::ffff:198.18.0.20"), scopeId: 0, flowInfo: 0);

        Assert.That(OriginalDestination.TryParseSockaddr(sockaddr, out IPEndPoint? endPoint), Is.True);
        Assert.That(endPoint, Is.EqualTo(new IPEndPoint(IPAddress.Parse("198.18.0.20"), 25)));
        Assert.That(endPoint!.AddressFamily, Is.EqualTo(AddressFamily.InterNetwork));
    }

    [Test]
    public void IPv4CompatibleButNotMappedStaysIPv6()
    {
        byte[] sockaddr = SockaddrIn6(port: 25, IPAddress.Parse("::fffe:c612:14"), scopeId: 0, flowInfo: 0);

        Assert.That(OriginalDestination.TryParseSockaddr(sockaddr, out IPEndPoint? endPoint), Is.True);
        Assert.That(endPoint!.AddressFamily, Is.EqualTo(AddressFamily.InterNetworkV6));
    }

    [Test]
    public void FamilyDecidesNotLength()
    {
        byte[] v4InLargeBuffer = new byte[28];
        SockaddrIn(80, 1, 2, 3, 4).CopyTo(v4InLargeBuffer, 0);
        v4InLargeBuffer[20] = 0xEE;

        Assert.That(OriginalDestination.TryParseSockaddr(v4InLargeBuffer, out IPEndPoint? endPoint), Is.True);
        Assert.That(endPoint, Is.EqualTo(new IPEndPoint(IPAddress.Parse("1.2.3.4"), 80)));
    }

    [TestCase(new byte[0])]
    [TestCase(new byte[] { 2 })]
    [TestCase(new byte[] { 2, 0, 0, 80, 127, 0, 0, 1 })]
    [TestCase(new byte[] { 2, 0, 0, 80, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 })]
    public void ShortSockaddrInIsRejected(byte[] sockaddr)
    {
        Assert.That(OriginalDestination.TryParseSockaddr(sockaddr, out IPEndPoint? endPoint), Is.False);
        Assert.That(endPoint, Is.Null);
    }

    [Test]
    public void ShortSockaddrIn6IsRejected()
    {
        byte[] full = SockaddrIn6(port: 443, IPAddress.Parse("2001:db8::10"), scopeId: 0, flowInfo: 0);

        Assert.That(OriginalDestination.TryParseSockaddr(full.AsSpan(0, 27), out _), Is.False);
        Assert.That(OriginalDestination.TryParseSockaddr(full.AsSpan(0, 16), out _), Is.False);
        Assert.That(OriginalDestination.TryParseSockaddr(full.AsSpan(0, 28), out _), Is.True);
    }

    [TestCase((ushort)0)]
    [TestCase((ushort)1)]
    [TestCase((ushort)40)]
    [TestCase((ushort)0x0200)]
    [TestCase((ushort)0x0A00)]
    [TestCase((ushort)0xFFFF)]
    public void OtherFamiliesAreRejected(ushort family)
    {
        byte[] sockaddr = new byte[28];
        BitConverter.TryWriteBytes(sockaddr, family);

        Assert.That(OriginalDestination.TryParseSockaddr(sockaddr, out IPEndPoint? endPoint), Is.False);
        Assert.That(endPoint, Is.Null);
    }

    [Test]
    public void ArbitraryBytesNeverThrowAndParseOnlyCompleteKnownFamilies() =>
        Prop.ForAll<bool, bool, byte[]>((setFamily, inet6, bytes) =>
        {
            if (setFamily && bytes.Length >= 2)
            {
                BitConverter.TryWriteBytes(bytes, inet6 ? (ushort)10 : (ushort)2);
            }

            bool parsed = OriginalDestination.TryParseSockaddr(bytes, out IPEndPoint? endPoint);
            ushort family = bytes.Length >= 2 ? BitConverter.ToUInt16(bytes) : (ushort)0;
            bool complete = (family == 2 && bytes.Length >= 16) || (family == 10 && bytes.Length >= 28);
            return parsed == complete && (endPoint is not null) == parsed;
        }).QuickCheckThrowOnFailure();

    internal static byte[] SockaddrIn(int port, byte a, byte b, byte c, byte d)
    {
        byte[] sockaddr = new byte[16];
        BitConverter.TryWriteBytes(sockaddr, (ushort)2);
        sockaddr[2] = (byte)(port >> 8);
        sockaddr[3] = (byte)port;
        (sockaddr[4], sockaddr[5], sockaddr[6], sockaddr[7]) = (a, b, c, d);
        return sockaddr;
    }

    internal static byte[] SockaddrIn6(int port, IPAddress address, uint scopeId, uint flowInfo)
    {
        byte[] sockaddr = new byte[28];
        BitConverter.TryWriteBytes(sockaddr, (ushort)10);
        sockaddr[2] = (byte)(port >> 8);
        sockaddr[3] = (byte)port;
        BitConverter.TryWriteBytes(sockaddr.AsSpan(4), flowInfo);
        address.GetAddressBytes().CopyTo(sockaddr, 8);
        BitConverter.TryWriteBytes(sockaddr.AsSpan(24), scopeId);
        return sockaddr;
    }
}
