using System.Net;
using System.Net.Sockets;
using Egress.Sockets;

namespace Egress.Tests.Sockets;

/// <summary>
/// O_NONBLOCK set and cleared with one ioctl(FIONBIO): the descriptor's mode changes (a connect on it then returns
/// EINPROGRESS instead of waiting), the runtime's view (<see cref="Socket.Blocking"/>) and its asynchronous context stay untouched,
/// and a closed socket is refused.
/// </summary>
[Platform("Linux")]
public sealed class SocketNativeTests
{
    [TestCase(111, SocketError.ConnectionRefused, "Connection refused")] // the runtime's own text for one it knows
    [TestCase(19, SocketError.SocketError, "No such device (errno 19)")] // ENODEV: "Unknown socket error" before
    [TestCase(38, SocketError.SocketError, "Function not implemented (errno 38)")]
    public void AnErrnoIsNamedEvenWhereTheRuntimeDoesNotKnowIt(int errno, SocketError error, string message)
    {
        SocketException exception = SocketNative.ExceptionFor(errno);
        Assert.That((exception.SocketErrorCode, exception.Message), Is.EqualTo((error, message)));
    }

    [Test]
    public void SetNonBlockingSetsAndClearsTheDescriptorsFlag()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Assert.That(IsNonBlocking(socket), Is.False, "a new socket is blocking");

        SocketNative.SetNonBlocking(socket.SafeHandle, true);
        Assert.Multiple(() =>
        {
            Assert.That(IsNonBlocking(socket), Is.True);
            Assert.That(socket.Blocking, Is.True, "the runtime does not see it");
            Assert.That(SocketReadinessConnectTests.AsyncContext(socket), Is.Null, "and gives the socket no asynchronous context");
        });

        SocketNative.SetNonBlocking(socket.SafeHandle, true);
        Assert.That(IsNonBlocking(socket), Is.True, "setting it twice leaves it set");

        SocketNative.SetNonBlocking(socket.SafeHandle, false);
        Assert.That(IsNonBlocking(socket), Is.False);
    }

    [TestCase(true, SocketNative.InProgress)]
    [TestCase(false, 0)]
    public void ATcpConnectOnTheDescriptorWaitsOnlyWhenItIsBlocking(bool nonBlocking, int expectedErrno)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        SocketNative.SetNonBlocking(socket.SafeHandle, nonBlocking);

        // connect(2) of our own: a non-blocking TCP connect returns EINPROGRESS even on loopback, a blocking one
        // returns once the handshake is done.
        Assert.That(SocketNative.Connect(socket.SafeHandle, listener.LocalEndPoint!), Is.EqualTo(expectedErrno));
    }

    [Test]
    public void AClosedSocketIsRefused()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Dispose();
        Assert.Throws<ObjectDisposedException>(() => SocketNative.SetNonBlocking(socket.SafeHandle, true));
    }

    /// <summary>The descriptor's O_NONBLOCK as the kernel reports it (/proc/self/fdinfo: "flags:", octal; 04000).</summary>
    internal static bool IsNonBlocking(Socket socket)
    {
        string fd = socket.SafeHandle.DangerousGetHandle().ToString(System.Globalization.CultureInfo.InvariantCulture);
        string flags = File.ReadLines($"/proc/self/fdinfo/{fd}").First(line => line.StartsWith("flags:", StringComparison.Ordinal));
        return (Convert.ToInt32(flags["flags:".Length..].Trim(), 8) & 0x800) != 0;
    }
}
