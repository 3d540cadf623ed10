using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Egress.Configuration;

/// <summary>
/// The file type of a path from the configuration (a socket file, a FIFO), which .NET's file APIs cannot tell: the
/// S_IFMT bits of statx(2)'s stx_mode (include/uapi/linux/stat.h). struct statx has one layout on every Linux
/// architecture, unlike struct stat.
/// </summary>
internal static partial class PathFileType
{
    /// <summary>S_IFSOCK.</summary>
    public const int Socket = 0xC000;

    /// <summary>S_IFREG.</summary>
    public const int Regular = 0x8000;

    /// <summary>S_IFIFO.</summary>
    public const int Fifo = 0x1000;

    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const uint StatxMode = 0x2;
    private const uint StatxUid = 0x8;
    private const uint StatxSizeMask = 0x200;
    private const int StatxUidOffset = 20;
    private const int StatxSizeOffset = 40;
    private const int AtEmptyPath = 0x1000;
    private const int ReadOnly = 0;
    private const int NonBlocking = 0x800;
    // O_NOFOLLOW differs by architecture (include/uapi/asm-generic/fcntl.h: 0400000, as on x86-64; arch/arm64, arch/arm
    // and arch/powerpc: 0100000); O_NONBLOCK and O_CLOEXEC do not, on these.
    private static readonly int NoFollow = RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm or Architecture.Ppc64le ? 0x8000 : 0x20000;
    private const int CloseOnExec = 0x80000;
    /// <summary>S_IFDIR.</summary>
    public const int Directory = 0x4000;
    private const int StatxSize = 256;
    private const int StatxModeOffset = 28;
    private const int FileTypeMask = 0xF000;
    private const int NoSuchFile = 2;

    /// <summary>The file type of <paramref name="path"/>.</summary>
    /// <param name="path">The path.</param>
    /// <param name="followLinks">Whether a symbolic link is followed (as open(2) does) or looked at itself.</param>
    /// <returns>The S_IFMT bits (<see cref="Socket"/>, <see cref="Fifo"/>, ...); null when nothing exists there.</returns>
    /// <exception cref="IOException">statx(2) failed other than with ENOENT.</exception>
    public static int? Of(string path, bool followLinks) => Describe(path, followLinks)?.Type;

    /// <summary>The file type, permission bits, owner and size of <paramref name="path"/>.</summary>
    /// <param name="path">The path.</param>
    /// <param name="followLinks">Whether a symbolic link is followed (as open(2) does) or looked at itself.</param>
    /// <returns>Null when nothing exists there.</returns>
    /// <exception cref="IOException">statx(2) failed other than with ENOENT.</exception>
    public static unsafe FileStatus? Describe(string path, bool followLinks = true)
    {
        byte* buffer = stackalloc byte[StatxSize];
        if (Statx(AtFdCwd, path, followLinks ? 0 : AtSymlinkNoFollow, StatxType | StatxMode | StatxUid | StatxSizeMask, buffer) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            return errno == NoSuchFile
                ? null
                : throw new IOException($"statx({path}) failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)}).");
        }

        return Status(buffer);
    }

    /// <summary>The file type, permission bits, owner and size of the file <paramref name="handle"/> is open on.</summary>
    /// <exception cref="IOException">statx(2) failed.</exception>
    public static unsafe FileStatus Describe(SafeFileHandle handle)
    {
        byte* buffer = stackalloc byte[StatxSize];
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            if (Statx((int)handle.DangerousGetHandle(), string.Empty, AtEmptyPath, StatxType | StatxMode | StatxUid | StatxSizeMask, buffer) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw new IOException($"statx failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)}).");
            }
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }

        return Status(buffer);
    }

    /// <summary>Opens <paramref name="path"/> for reading without following a symbolic link in its last component and
    /// without waiting for a FIFO's writer (open(2) with O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC): check what was opened
    /// with <see cref="Describe(SafeFileHandle)"/>, not the path, which may have changed since.</summary>
    /// <returns>The handle, or null and the errno (ENOENT: nothing there; ELOOP: a symbolic link).</returns>
    public static SafeFileHandle? OpenForReading(string path, out int errno)
    {
        int fd = Open(path, ReadOnly | NoFollow | NonBlocking | CloseOnExec);
        if (fd < 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }

        errno = 0;
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>ENOENT.</summary>
    public const int NoSuchFileError = NoSuchFile;

    /// <summary>ELOOP: O_NOFOLLOW met a symbolic link.</summary>
    public const int SymbolicLinkError = 40;

    private static unsafe FileStatus Status(byte* buffer)
    {
        int mode = *(ushort*)(buffer + StatxModeOffset);
        return new FileStatus(mode & FileTypeMask, mode & 0xFFF, *(uint*)(buffer + StatxUidOffset), *(long*)(buffer + StatxSizeOffset));
    }

    /// <summary>What statx(2) says of a file.</summary>
    /// <param name="Type">The S_IFMT bits (<see cref="Regular"/>, <see cref="Fifo"/>, ...).</param>
    /// <param name="Permissions">The permission bits (07777).</param>
    /// <param name="Owner">The owner's user id.</param>
    /// <param name="Size">The size in bytes.</param>
    internal readonly record struct FileStatus(int Type, int Permissions, uint Owner, long Size);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    /// <summary>The canonical absolute path of <paramref name="path"/>, every link in it resolved (realpath(3)); null when
    /// it cannot be resolved (a component missing or not searchable, a loop of links).</summary>
    public static unsafe string? RealPath(string path)
    {
        nint resolved = ResolvePath(path, 0);
        if (resolved == 0)
        {
            return null;
        }

        try
        {
            return Marshal.PtrToStringUTF8(resolved);
        }
        finally
        {
            NativeMemory.Free((void*)resolved); // realpath(3) allocated it with malloc
        }
    }

    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint ResolvePath(string path, nint resolved);

    /// <summary>The effective user id of this process (geteuid(2)).</summary>
    public static uint EffectiveUserId() => GetEffectiveUserId();

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEffectiveUserId();

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directoryFd, string path, int flags, uint mask, byte* buffer);
}
