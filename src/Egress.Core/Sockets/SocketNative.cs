using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Egress.Sockets;

/// <summary>
/// recv(2), send(2), connect(2) and the O_NONBLOCK flag on a socket's descriptor, called directly (Linux only): the
/// runtime creates a socket's asynchronous context (its <c>SocketAsyncContext</c>, about 0.2 KB with its locks, kept for
/// the socket's life) the first time its <see cref="Socket.Blocking"/> property is set to false or any of its own
/// Send/Receive/Connect runs, even a blocking one. An idle relayed connection holds two sockets on each host; done here,
/// neither ever gets one (the runtime's asynchronous send, used only when a socket is full, still creates it).
/// </summary>
/// <remarks>
/// The runtime does not see what is done here: a socket made non-blocking by <see cref="SetNonBlocking"/> still reads
/// <see cref="Socket.Blocking"/> true, and the runtime's own blocking Send/Receive on it would then fail
/// (<see cref="SocketError.TimedOut"/>) instead of waiting where it has to wait; its asynchronous operations work.
/// A socket connected by <see cref="Connect"/> reads <see cref="Socket.Connected"/> false and has no
/// <see cref="Socket.RemoteEndPoint"/> to the runtime (<see cref="SocketReadiness.ConnectWithoutContextAsync"/> says what
/// else follows). Errors are mapped to <see cref="SocketError"/> as the runtime maps them
/// (SocketErrorPal.Unix), so the exceptions are the ones its operations throw.
/// </remarks>
internal static unsafe partial class SocketNative
{
    private const int DontWait = 0x40; // MSG_DONTWAIT
    private const int NoSignal = 0x4000; // MSG_NOSIGNAL
    private const int GetFlags = 3; // F_GETFL
    private const int SetFlags = 4; // F_SETFL
    private const nuint NonBlockingIo = 0x5421; // FIONBIO of the asm-generic ioctls
    private const int NonBlockingFlag = 0x800; // O_NONBLOCK (x86-64, arm64, ppc64le)

    // The architectures whose FIONBIO is asm-generic's (not PowerPC's, MIPS's or SPARC's).
    private static readonly bool GenericIoctls = RuntimeInformation.ProcessArchitecture
        is Architecture.X64 or Architecture.Arm64 or Architecture.X86 or Architecture.Arm or Architecture.RiscV64
        or Architecture.LoongArch64 or Architecture.S390x;

    /// <summary>EAGAIN (= EWOULDBLOCK).</summary>
    public const int Again = 11;

    /// <summary>EINTR.</summary>
    public const int Interrupted = 4;

    /// <summary>EINPROGRESS.</summary>
    public const int InProgress = 115;

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Recv(SafeSocketHandle fd, byte* buffer, nint length, int flags);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint Send(SafeSocketHandle fd, byte* buffer, nint length, int flags);

    [LibraryImport("libc", EntryPoint = "connect", SetLastError = true)]
    private static partial int ConnectNative(SafeSocketHandle fd, byte* address, int length);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(SafeSocketHandle fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(SafeSocketHandle fd, nuint request, int* argument);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(PollEntry* entries, nuint count, int timeoutMilliseconds);

    /// <summary>POLLIN: readable (bytes, or the end of stream).</summary>
    public const short PollIn = 0x1;

    /// <summary>POLLPRI: urgent data.</summary>
    public const short PollPri = 0x2;

    private const short PollErr = 0x8; // POLLERR, always reported
    private const short PollHup = 0x10; // POLLHUP, always reported
    private const short PollReadHangUp = 0x2000; // POLLRDHUP: the peer shut its sending side down

    /// <summary>struct pollfd.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct PollEntry
    {
        public int Descriptor;
        public short Events;
        public short ReturnedEvents;
    }

    /// <summary>poll(2) of one socket, without waiting.</summary>
    /// <param name="handle">The socket.</param>
    /// <param name="events">The events asked for (<see cref="PollIn"/>, <see cref="PollPri"/>); POLLERR, POLLHUP and
    /// POLLNVAL are always reported.</param>
    /// <returns>The events that hold now (0: none); -1 when the poll failed.</returns>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    public static int PollNow(SafeSocketHandle handle, short events)
    {
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            var entry = new PollEntry { Descriptor = (int)handle.DangerousGetHandle(), Events = events };
            int ready = Poll(&entry, 1, 0);
            return ready < 0 ? -1 : ready == 0 ? 0 : entry.ReturnedEvents;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    /// <summary>Whether the peer has shut its sending side down (its FIN arrived: POLLRDHUP, also while its earlier bytes
    /// are still queued in front of it, which a peek would read first), or the connection is reset or broken.</summary>
    /// <param name="handle">A connected stream socket.</param>
    /// <returns>True when it has; false while it is open, or when the poll failed.</returns>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    public static bool PeerShutDown(SafeSocketHandle handle) =>
        PollNow(handle, PollReadHangUp) is var events and > 0 && (events & (PollReadHangUp | PollHup | PollErr)) != 0;

    /// <summary>recv(2) with MSG_DONTWAIT, whatever the descriptor's mode.</summary>
    /// <returns>Bytes received; 0 at end of stream (or for an empty buffer); -1 when nothing is there (EAGAIN).</returns>
    /// <exception cref="SocketException">The receive failed (e.g. <see cref="SocketError.ConnectionReset"/>).</exception>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    public static int ReceiveNow(SafeSocketHandle handle, Span<byte> buffer)
    {
        fixed (byte* bytes = buffer)
        {
            while (true)
            {
                nint received = Recv(handle, bytes, buffer.Length, DontWait);
                if (received >= 0)
                {
                    return (int)received;
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno == Again)
                {
                    return -1;
                }

                if (errno != Interrupted)
                {
                    throw ExceptionFor(errno);
                }
            }
        }
    }

    /// <summary>send(2) with MSG_DONTWAIT and MSG_NOSIGNAL, whatever the descriptor's mode.</summary>
    /// <returns>Bytes sent; 0 when the socket has no room (EAGAIN).</returns>
    /// <exception cref="SocketException">The send failed (e.g. ECONNRESET, EPIPE: <see cref="SocketError.Shutdown"/>).</exception>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    public static int SendNow(SafeSocketHandle handle, ReadOnlySpan<byte> buffer)
    {
        fixed (byte* bytes = buffer)
        {
            while (true)
            {
                nint sent = Send(handle, bytes, buffer.Length, DontWait | NoSignal);
                if (sent >= 0)
                {
                    return (int)sent;
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno == Again)
                {
                    return 0;
                }

                if (errno != Interrupted)
                {
                    throw ExceptionFor(errno);
                }
            }
        }
    }

    /// <summary>Sets or clears O_NONBLOCK on the descriptor: one ioctl(FIONBIO), which changes that flag alone, so the
    /// descriptor's other flags need not be read first (fcntl F_GETFL and F_SETFL would be two system calls). Where
    /// FIONBIO is not the asm-generic number (e.g. ppc64le), fcntl.</summary>
    /// <exception cref="SocketException">The ioctl or fcntl failed.</exception>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    public static void SetNonBlocking(SafeSocketHandle handle, bool nonBlocking)
    {
        if (!GenericIoctls)
        {
            int flags = Fcntl(handle, GetFlags, 0);
            if (flags < 0 || Fcntl(handle, SetFlags, nonBlocking ? flags | NonBlockingFlag : flags & ~NonBlockingFlag) < 0)
            {
                throw ExceptionFor(Marshal.GetLastPInvokeError());
            }

            return;
        }

        int value = nonBlocking ? 1 : 0;
        if (Ioctl(handle, NonBlockingIo, &value) < 0)
        {
            throw ExceptionFor(Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>connect(2) to <paramref name="endPoint"/>'s serialized address (the bytes the runtime's connect passes).</summary>
    /// <returns>0 when connected; else the errno (EINPROGRESS for a non-blocking connect under way).</returns>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    public static int Connect(SafeSocketHandle handle, EndPoint endPoint)
    {
        SocketAddress address = endPoint.Serialize();
        fixed (byte* bytes = address.Buffer.Span)
        {
            return ConnectNative(handle, bytes, address.Size) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
    }

    /// <summary>The exception for Linux <paramref name="errno"/>: the runtime's <see cref="SocketError"/> for it, and for
    /// one the runtime does not know (<see cref="SocketError.SocketError"/>, whose own text is "Unknown socket error")
    /// the C library's text and the number, e.g. <c>No such device (errno 19)</c>: what a VSOCK connect says on a
    /// machine with no VSOCK transport.</summary>
    public static SocketException ExceptionFor(int errno)
    {
        SocketError error = ErrorFor(errno);
        return error == SocketError.SocketError
            ? new SocketException((int)error, $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})")
            : new SocketException((int)error);
    }

    /// <summary>The <see cref="SocketError"/> the runtime reports for Linux <paramref name="errno"/> (its
    /// SocketErrorPal.Unix table); <see cref="SocketError.SocketError"/> for one it does not know.</summary>
    public static SocketError ErrorFor(int errno) => errno switch
    {
        1 => SocketError.AccessDenied, // EPERM
        2 => SocketError.AddressNotAvailable, // ENOENT
        4 => SocketError.Interrupted, // EINTR
        6 => SocketError.HostNotFound, // ENXIO
        9 => SocketError.OperationAborted, // EBADF
        11 => SocketError.WouldBlock, // EAGAIN
        13 => SocketError.AccessDenied, // EACCES
        14 => SocketError.Fault, // EFAULT
        22 => SocketError.InvalidArgument, // EINVAL
        23 => SocketError.TooManyOpenSockets, // ENFILE
        24 => SocketError.TooManyOpenSockets, // EMFILE
        32 => SocketError.Shutdown, // EPIPE
        61 => SocketError.NoData, // ENODATA
        88 => SocketError.NotSocket, // ENOTSOCK
        89 => SocketError.DestinationAddressRequired, // EDESTADDRREQ
        90 => SocketError.MessageSize, // EMSGSIZE
        91 => SocketError.ProtocolType, // EPROTOTYPE
        92 => SocketError.ProtocolOption, // ENOPROTOOPT
        93 => SocketError.ProtocolNotSupported, // EPROTONOSUPPORT
        94 => SocketError.SocketNotSupported, // ESOCKTNOSUPPORT
        95 => SocketError.OperationNotSupported, // EOPNOTSUPP = ENOTSUP
        96 => SocketError.ProtocolFamilyNotSupported, // EPFNOSUPPORT
        97 => SocketError.AddressFamilyNotSupported, // EAFNOSUPPORT
        98 => SocketError.AddressAlreadyInUse, // EADDRINUSE
        99 => SocketError.AddressNotAvailable, // EADDRNOTAVAIL
        100 => SocketError.NetworkDown, // ENETDOWN
        101 => SocketError.NetworkUnreachable, // ENETUNREACH
        102 => SocketError.NetworkReset, // ENETRESET
        103 => SocketError.ConnectionAborted, // ECONNABORTED
        104 => SocketError.ConnectionReset, // ECONNRESET
        105 => SocketError.NoBufferSpaceAvailable, // ENOBUFS
        106 => SocketError.IsConnected, // EISCONN
        107 => SocketError.NotConnected, // ENOTCONN
        108 => SocketError.Disconnecting, // ESHUTDOWN
        110 => SocketError.TimedOut, // ETIMEDOUT
        111 => SocketError.ConnectionRefused, // ECONNREFUSED
        112 => SocketError.HostDown, // EHOSTDOWN
        113 => SocketError.HostUnreachable, // EHOSTUNREACH
        114 => SocketError.AlreadyInProgress, // EALREADY
        115 => SocketError.InProgress, // EINPROGRESS
        125 => SocketError.OperationAborted, // ECANCELED
        _ => SocketError.SocketError,
    };
}
