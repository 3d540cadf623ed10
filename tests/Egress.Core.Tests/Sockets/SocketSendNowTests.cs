using System.Net.Sockets;
using Egress.Sockets;

namespace Egress.Tests.Sockets;

/// <summary>
/// send(2) without waiting: what fits goes out, a full socket takes nothing (the caller then sends asynchronously), an
/// error is thrown as the asynchronous send would, and a blocking socket's mode is unchanged afterwards.
/// </summary>
public sealed class SocketSendNowTests
{
    [Test]
    public void ABlockingSocketSendsWhatFitsAndStaysBlocking()
    {
        var (left, right) = Pair();
        using (left)
        using (right)
        {
            Assert.That(SocketSendNow.AnyMode(left, [1, 2, 3]), Is.EqualTo(3));
            byte[] got = new byte[3];
            Assert.Multiple(() =>
            {
                Assert.That(right.Receive(got), Is.EqualTo(3));
                Assert.That(got, Is.EqualTo(new byte[] { 1, 2, 3 }));
                Assert.That(left.Blocking, Is.True, "the owner's mode is unchanged");
            });
        }
    }

    [Test]
    public void AFullSocketTakesNothingInsteadOfWaiting()
    {
        var (left, right) = Pair();
        using (left)
        using (right)
        {
            byte[] chunk = new byte[64 * 1024];
            long sent = 0;
            int now;
            while ((now = SocketSendNow.AnyMode(left, chunk)) > 0)
            {
                sent += now; // fills the send buffer and the peer's receive buffer, never blocks
            }

            Assert.Multiple(() =>
            {
                Assert.That(now, Is.Zero);
                Assert.That(sent, Is.GreaterThan(0));
                Assert.That(left.Blocking, Is.True);
            });
        }
    }

    [Test]
    public void AResetPeerIsThrownAsTheSocketError()
    {
        var (left, right) = Pair();
        using (left)
        {
            right.Dispose();
            left.Blocking = false;
            var error = Assert.Throws<SocketException>(() =>
            {
                for (int i = 0; i < 10; i++)
                {
                    SocketSendNow.NonBlocking(left, [1]); // EPIPE once the peer is gone
                }
            });
            Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.Shutdown).Or.EqualTo(SocketError.ConnectionReset).Or.EqualTo(SocketError.ConnectionAborted));
        }
    }

    private static (Socket Left, Socket Right) Pair()
    {
        string path = Path.Combine(Path.GetTempPath(), $"egress-sendnow-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var left = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        left.Connect(listener.LocalEndPoint!);
        var right = listener.Accept();
        File.Delete(path);
        return (left, right);
    }
}
