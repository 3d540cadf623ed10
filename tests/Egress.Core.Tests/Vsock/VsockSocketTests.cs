using System.Net.Sockets;
using Egress.Vsock;

namespace Egress.Tests.Vsock;

/// <summary>Binds and listens on real VSOCK sockets. Never connects: no VSOCK peer on these machines is ours.</summary>
public sealed class VsockSocketTests
{
    [SetUp]
    public void RequireVsock()
    {
        if (!VsockSocket.IsSupported)
        {
            Assert.Ignore("VSOCK tests need Linux with /dev/vsock; this machine has none.");
        }
    }

    [Test]
    public void CreatedSocketReportsUnknownFamilyAndStream()
    {
        using Socket socket = VsockSocket.Create();

        Assert.That(socket.AddressFamily, Is.EqualTo(AddressFamily.Unknown));
        Assert.That(socket.SocketType, Is.EqualTo(SocketType.Stream));
    }

    [Test]
    public void BindAnyCidEphemeralPortListensAndReportsLocalEndPoint()
    {
        using Socket listener = VsockSocket.Create();

        listener.Bind(new VsockEndPoint(VsockEndPoint.AnyCid, VsockEndPoint.AnyPort));
        listener.Listen();

        var local = (VsockEndPoint)listener.LocalEndPoint!;
        Assert.That(local.Cid, Is.EqualTo(VsockEndPoint.AnyCid));
        Assert.That(local.Port, Is.Not.EqualTo(VsockEndPoint.AnyPort));
    }

    [Test]
    public void SecondBindToSamePortIsAddressAlreadyInUse()
    {
        using Socket first = VsockSocket.Create();
        first.Bind(new VsockEndPoint(VsockEndPoint.AnyCid, VsockEndPoint.AnyPort));
        first.Listen();
        var bound = (VsockEndPoint)first.LocalEndPoint!;
        using Socket second = VsockSocket.Create();

        Assert.That(
            () => second.Bind(new VsockEndPoint(VsockEndPoint.AnyCid, bound.Port)),
            Throws.InstanceOf<SocketException>().With.Property(nameof(SocketException.SocketErrorCode)).EqualTo(SocketError.AddressAlreadyInUse));
    }

    [Test]
    public async Task AcceptAsyncIsCancellable()
    {
        using Socket listener = VsockSocket.Create();
        listener.Bind(new VsockEndPoint(VsockEndPoint.AnyCid, VsockEndPoint.AnyPort));
        listener.Listen();
        using var cancellation = new CancellationTokenSource();

        ValueTask<Socket> accept = listener.AcceptAsync(cancellation.Token);
        await cancellation.CancelAsync();

        Assert.That(async () => await accept, Throws.InstanceOf<OperationCanceledException>());
    }

    [Test]
    public async Task DisposingDuringAcceptEndsTheAccept()
    {
        Socket listener = VsockSocket.Create();
        listener.Bind(new VsockEndPoint(VsockEndPoint.AnyCid, VsockEndPoint.AnyPort));
        listener.Listen();

        ValueTask<Socket> accept = listener.AcceptAsync(CancellationToken.None);
        listener.Dispose();

        Assert.That(async () => await accept, Throws.InstanceOf<SocketException>().Or.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public void LocalCidIsAConcreteContextId()
    {
        uint cid = LocalCidOrIgnore();

        Assert.That(cid, Is.Not.EqualTo(VsockEndPoint.AnyCid));
        Assert.That(cid, Is.GreaterThan(VsockEndPoint.LocalCid));
    }

    [Test]
    public void LocalCidIsBindable()
    {
        uint cid = LocalCidOrIgnore();
        using Socket listener = VsockSocket.Create();

        listener.Bind(new VsockEndPoint(cid, VsockEndPoint.AnyPort));

        Assert.That(((VsockEndPoint)listener.LocalEndPoint!).Cid, Is.EqualTo(cid));
    }

    /// <summary>
    /// The local CID, or the test is ignored when <c>/dev/vsock</c> exists but this user may not open it (root's, mode
    /// 0600, on most machines): sockets need no access to the device, the CID ioctl does.
    /// </summary>
    private static uint LocalCidOrIgnore()
    {
        try
        {
            return VsockSocket.GetLocalCid();
        }
        catch (UnauthorizedAccessException ex)
        {
            Assert.Ignore($"/dev/vsock exists but this user ({Environment.UserName}) may not open it, so the local CID cannot be read: {ex.Message} Run as root or as a user with read access to /dev/vsock.");
            throw;
        }
    }
}
