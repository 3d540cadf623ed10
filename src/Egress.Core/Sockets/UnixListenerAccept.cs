using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Egress.Sockets;

/// <summary>
/// Accepts on a Unix-domain listener with accept4(2) and no peer address. The runtime's own accept (.NET 10.0.x) sizes
/// the buffer for the peer's address from the listener's own address, and a peer bound to a longer path than the
/// listener's makes it throw on the runtime's socket thread, which ends the process (<c>Environment.FailFast</c>): any
/// local process that may connect to egress-host's <c>unix:</c> tunnel endpoint could stop it with one connect from
/// a bound socket. Nothing here needs the peer's address; <see cref="Socket.RemoteEndPoint"/> still reads it when asked
/// (getpeername(2) into a buffer of the family's largest size).
/// </summary>
internal static partial class UnixListenerAccept
{
    private const int SockCloexec = 0x80000; // SOCK_CLOEXEC
    private const int ConnectionAborted = 103; // ECONNABORTED: the peer reset it while queued

    [LibraryImport("libc", EntryPoint = "accept4", SetLastError = true)]
    private static partial int Accept4(SafeSocketHandle fd, nint address, nint addressLength, int flags);

    /// <summary>An accept function for <paramref name="listener"/> (a bound, listening Unix-domain socket): each call
    /// returns the next connection, waiting through epoll while none is queued. The first call makes the listener
    /// non-blocking (a failure then is an accept failure, which the accept loop logs and retries).</summary>
    public static Func<CancellationToken, ValueTask<Socket>> For(Socket listener)
    {
        bool nonBlocking = false;
        return cancellationToken =>
        {
            if (!nonBlocking)
            {
                SocketNative.SetNonBlocking(listener.SafeHandle, nonBlocking: true);
                nonBlocking = true; // the accept loop calls one at a time
            }

            return AcceptAsync(listener, cancellationToken);
        };
    }

    /// <summary>The next connection: accept4(2) at once, else when the listener is readable.</summary>
    /// <exception cref="SocketException">The accept failed (e.g. <see cref="SocketError.TooManyOpenSockets"/>).</exception>
    /// <exception cref="ObjectDisposedException">The listener is closed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    private static async ValueTask<Socket> AcceptAsync(Socket listener, CancellationToken cancellationToken)
    {
        while (true)
        {
            int fd = Accept4(listener.SafeHandle, 0, 0, SockCloexec);
            if (fd >= 0)
            {
                var handle = new SafeSocketHandle(fd, ownsHandle: true);
                try
                {
                    return new Socket(handle);
                }
                catch
                {
                    handle.Dispose(); // the descriptor is closed now, not at finalization
                    throw;
                }
            }

            int errno = Marshal.GetLastPInvokeError();
            if (errno == SocketNative.Again)
            {
                await SocketReadiness.WaitReadableAsync(listener, cancellationToken, drained: true).ConfigureAwait(false);
            }
            else if (errno is not (SocketNative.Interrupted or ConnectionAborted))
            {
                throw SocketNative.ExceptionFor(errno);
            }
        }
    }
}
