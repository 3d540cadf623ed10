using System.Runtime.InteropServices;

namespace Egress.Tunnel;

/// <summary>Tells whether a path is a Unix domain socket file, which .NET's file APIs cannot tell.</summary>
internal static partial class TunnelEndpointSocketFile
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const int StatxSize = 256;
    private const int StatxModeOffset = 28;
    private const int FileTypeMask = 0xF000;
    private const int SocketFileType = 0xC000;
    private const int NoSuchFile = 2;

    /// <summary>Looks at <paramref name="path"/> without following a symbolic link.</summary>
    /// <param name="path">The path.</param>
    /// <param name="isSocket">Whether the path is a socket file (a symbolic link is not).</param>
    /// <returns>Whether anything exists at the path.</returns>
    /// <exception cref="IOException">statx(2) failed other than with ENOENT.</exception>
    public static unsafe bool Exists(string path, out bool isSocket)
    {
        // struct statx has the same layout on every Linux architecture, unlike struct stat.
        byte* buffer = stackalloc byte[StatxSize];
        if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType, buffer) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            isSocket = false;
            return errno == NoSuchFile
                ? false
                : throw new IOException($"statx({path}) failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)}).");
        }

        isSocket = (*(ushort*)(buffer + StatxModeOffset) & FileTypeMask) == SocketFileType;
        return true;
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directoryFd, string path, int flags, uint mask, byte* buffer);
}
