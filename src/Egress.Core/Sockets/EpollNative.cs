using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Egress.Sockets;

/// <summary>The libc calls behind <see cref="SocketReadiness"/>: epoll_create1, epoll_ctl and epoll_wait (epoll(7)).</summary>
/// <remarks>
/// <c>struct epoll_event</c> is packed on x86-64 (12 bytes: 4-byte events, 8-byte data at offset 4) and naturally
/// aligned elsewhere (16 bytes, data at offset 8), so it is read and written as bytes at those offsets.
/// </remarks>
internal static unsafe partial class EpollNative
{
    /// <summary>EPOLLIN: readable (data, end of stream).</summary>
    public const uint In = 0x001;

    /// <summary>EPOLLOUT: writable (a non-blocking connect finished, either way).</summary>
    public const uint Out = 0x004;

    /// <summary>EPOLLERR: an error is pending on the socket (SO_ERROR), e.g. a connect that failed.</summary>
    public const uint Error = 0x008;

    /// <summary>EPOLLHUP: both directions are shut down, or a TCP socket is closed (e.g. a connect that was refused).</summary>
    public const uint HangUp = 0x010;

    /// <summary>EPOLLRDHUP: the peer shut its sending side down.</summary>
    public const uint ReadHangUp = 0x2000;

    /// <summary>EPOLLONESHOT: report once, then stay disabled until modified or deleted.</summary>
    public const uint OneShot = 1u << 30;

    /// <summary>EPOLL_CTL_ADD.</summary>
    public const int Add = 1;

    /// <summary>EPOLL_CTL_MOD.</summary>
    public const int Modify = 3;

    /// <summary>ENOENT: the descriptor is not in the set.</summary>
    public const int NotFound = 2;

    /// <summary>EPOLL_CTL_DEL.</summary>
    public const int Delete = 2;

    /// <summary>EEXIST: EPOLL_CTL_ADD of a descriptor already in the set.</summary>
    public const int Exists = 17;

    /// <summary>EINTR.</summary>
    public const int Interrupted = 4;

    /// <summary>EPOLL_CLOEXEC (= O_CLOEXEC).</summary>
    private const int CloseOnExec = 0x80000;

    /// <summary>Bytes of one <c>struct epoll_event</c>.</summary>
    public static readonly int EventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;

    /// <summary>Offset of <c>epoll_event.data</c>.</summary>
    public static readonly int DataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    [LibraryImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    private static partial int Create1(int flags);

    [LibraryImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    private static partial int Control(int epoll, int operation, nint fd, byte* ev);

    [LibraryImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    public static partial int Wait(int epoll, byte* events, int maxEvents, int timeoutMilliseconds);

    [LibraryImport("libc", EntryPoint = "getpeername", SetLastError = true)]
    private static partial int GetPeerName(SafeSocketHandle fd, byte* address, int* length);

    /// <summary>Whether the socket <paramref name="fd"/> has a peer (getpeername(2) succeeds): false while it is not
    /// connected (ENOTCONN).</summary>
    public static bool HasPeer(SafeSocketHandle fd)
    {
        byte* address = stackalloc byte[128];
        int length = 128;
        return GetPeerName(fd, address, &length) == 0;
    }

    /// <summary>A new close-on-exec epoll instance.</summary>
    /// <exception cref="IOException">The kernel refused (e.g. out of descriptors).</exception>
    public static int Create()
    {
        int epoll = Create1(CloseOnExec);
        if (epoll < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"epoll_create1 failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
        }

        return epoll;
    }

    /// <summary>epoll_ctl with <paramref name="events"/> and <paramref name="data"/>.</summary>
    /// <returns>0, or the errno.</returns>
    public static int Control(int epoll, int operation, nint fd, uint events, ulong data)
    {
        byte* ev = stackalloc byte[16];
        *(uint*)ev = events;
        Unsafe.WriteUnaligned(ev + DataOffset, data);
        return Control(epoll, operation, fd, ev) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>The data of the <paramref name="index"/>th event in <paramref name="events"/>.</summary>
    public static ulong DataAt(byte* events, int index) => Unsafe.ReadUnaligned<ulong>(events + (index * EventSize) + DataOffset);

    /// <summary>Reads <c>epoll_event.events</c> (EPOLLIN, EPOLLRDHUP, ...) of event <paramref name="index"/>.</summary>
    public static uint EventsAt(byte* events, int index) => Unsafe.ReadUnaligned<uint>(events + (index * EventSize));
}
