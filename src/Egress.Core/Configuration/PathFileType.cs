using System.Runtime.InteropServices;

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
    private const int StatxUidOffset = 20;
    private const int StatxSize = 256;
    private const int StatxModeOffset = 28;
    private const int FileTypeMask = 0xF000;
    private const int NoSuchFile = 2;

    /// <summary>The file type of <paramref name="path"/>.</summary>
    /// <param name="path">The path.</param>
    /// <param name="followLinks">Whether a symbolic link is followed (as open(2) does) or looked at itself.</param>
    /// <returns>The S_IFMT bits (<see cref="Socket"/>, <see cref="Fifo"/>, ...); null when nothing exists there.</returns>
    /// <exception cref="IOException">statx(2) failed other than with ENOENT.</exception>
    public static unsafe int? Of(string path, bool followLinks)
    {
        byte* buffer = stackalloc byte[StatxSize];
        if (Statx(AtFdCwd, path, followLinks ? 0 : AtSymlinkNoFollow, StatxType, buffer) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            return errno == NoSuchFile
                ? null
                : throw new IOException($"statx({path}) failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)}).");
        }

        return *(ushort*)(buffer + StatxModeOffset) & FileTypeMask;
    }

    /// <summary>The file type, permission bits and owner of <paramref name="path"/> itself (a symbolic link is not followed).</summary>
    /// <returns>The S_IFMT bits, the permission bits (07777) and the owner's user id; null when nothing exists there.</returns>
    /// <exception cref="IOException">statx(2) failed other than with ENOENT.</exception>
    public static unsafe (int Type, int Permissions, uint Owner)? Describe(string path)
    {
        byte* buffer = stackalloc byte[StatxSize];
        if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxMode | StatxUid, buffer) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            return errno == NoSuchFile
                ? null
                : throw new IOException($"statx({path}) failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)}).");
        }

        int mode = *(ushort*)(buffer + StatxModeOffset);
        return (mode & FileTypeMask, mode & 0xFFF, *(uint*)(buffer + StatxUidOffset));
    }

    /// <summary>The effective user id of this process (geteuid(2)).</summary>
    public static uint EffectiveUserId() => GetEffectiveUserId();

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEffectiveUserId();

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directoryFd, string path, int flags, uint mask, byte* buffer);
}
