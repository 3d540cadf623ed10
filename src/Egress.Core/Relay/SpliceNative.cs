using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Egress.Relay;

/// <summary>The libc calls behind <see cref="SplicePipe"/>: pipe2, splice and read, and errno to <see cref="SocketError"/>.</summary>
/// <remarks>
/// Socket and pipe descriptors are passed as safe handles, so a socket reset by another thread while a call runs
/// stays open (its descriptor number cannot be reused) until the call returns.
/// </remarks>
internal static unsafe partial class SpliceNative
{
    /// <summary>SPLICE_F_MOVE: move pages instead of copying where the kernel can.</summary>
    public const uint Move = 1;

    /// <summary>SPLICE_F_NONBLOCK: never wait on the pipe.</summary>
    public const uint NonBlock = 2;

    /// <summary>EINTR.</summary>
    public const int Interrupted = 4;

    /// <summary>EAGAIN (= EWOULDBLOCK).</summary>
    public const int WouldBlock = 11;

    /// <summary>EINVAL: among others, a descriptor that does not support splice.</summary>
    public const int Invalid = 22;

    /// <summary>F_SETPIPE_SZ (fcntl(2)): set a pipe's capacity; returns the capacity the kernel gave.</summary>
    private const int SetPipeSize = 1031;

    /// <summary>F_GETPIPE_SZ (fcntl(2)): a pipe's capacity.</summary>
    private const int GetPipeSize = 1032;

    /// <summary>O_NONBLOCK | O_CLOEXEC (Linux, x64 and arm64).</summary>
    private const int PipeFlags = 0x800 | 0x80000;

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    private static partial int Pipe2(int* fds, int flags);

    [LibraryImport("libc", EntryPoint = "splice", SetLastError = true)]
    public static partial nint Splice(SafeSocketHandle fdIn, nint offIn, SafeFileHandle fdOut, nint offOut, nuint length, uint flags);

    [LibraryImport("libc", EntryPoint = "splice", SetLastError = true)]
    public static partial nint Splice(SafeFileHandle fdIn, nint offIn, SafeSocketHandle fdOut, nint offOut, nuint length, uint flags);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(SafeFileHandle fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(SafeFileHandle fd, byte* buffer, nuint count);

    /// <summary>Creates a non-blocking, close-on-exec pipe.</summary>
    /// <exception cref="IOException">The kernel refused (e.g. out of descriptors).</exception>
    public static (SafeFileHandle Read, SafeFileHandle Write) CreatePipe()
    {
        int* fds = stackalloc int[2];
        if (Pipe2(fds, PipeFlags) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"pipe2 failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
        }

        return (new SafeFileHandle(fds[0], ownsHandle: true), new SafeFileHandle(fds[1], ownsHandle: true));
    }

    /// <summary>
    /// Asks the kernel to give the pipe behind <paramref name="pipe"/> <paramref name="requested"/> bytes of capacity
    /// (F_SETPIPE_SZ, fcntl(2)) and returns the capacity it has afterwards. An unprivileged process is refused a size
    /// above /proc/sys/fs/pipe-max-size (1 MiB by default) and any increase once its user's pipes hold more than
    /// /proc/sys/fs/pipe-user-pages-soft (64 MiB by default): the pipe then keeps the capacity it has (F_GETPIPE_SZ),
    /// and <paramref name="fallback"/> is returned when even that cannot be read (not a pipe).
    /// </summary>
    public static int ResizePipe(SafeFileHandle pipe, int requested, int fallback)
    {
        int capacity = Fcntl(pipe, SetPipeSize, requested);
        if (capacity < 0)
        {
            capacity = Fcntl(pipe, GetPipeSize, 0);
        }

        return capacity > 0 ? capacity : fallback;
    }

    /// <summary>The exception a socket operation would have thrown for <paramref name="errno"/>.</summary>
    public static SocketException ToSocketException(int errno, string operation) =>
        new((int)ToSocketError(errno), $"{operation}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");

    private static SocketError ToSocketError(int errno) => errno switch
    {
        9 => SocketError.OperationAborted, // EBADF: closed under us
        32 => SocketError.Shutdown, // EPIPE
        100 => SocketError.NetworkDown,
        101 => SocketError.NetworkUnreachable,
        103 => SocketError.ConnectionAborted,
        104 => SocketError.ConnectionReset,
        105 or 12 => SocketError.NoBufferSpaceAvailable, // ENOBUFS, ENOMEM
        107 => SocketError.NotConnected,
        110 => SocketError.TimedOut,
        111 => SocketError.ConnectionRefused,
        112 => SocketError.HostDown,
        113 => SocketError.HostUnreachable,
        _ => SocketError.SocketError,
    };
}
