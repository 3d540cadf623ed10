using System.Runtime.InteropServices;

namespace Egress.Connections;

/// <summary>The process's open-files limit, RLIMIT_NOFILE (the soft limit: what open, socket, accept and pipe2 fail
/// with EMFILE beyond), read with getrlimit(2).</summary>
/// <remarks>
/// Read after the runtime has started: .NET raises the soft limit to the hard limit at startup, so this is the hard
/// limit a `ulimit -n` or systemd <c>LimitNOFILE=</c> set.
/// </remarks>
internal static unsafe partial class OpenFileLimit
{
    /// <summary>What an unlimited or unreadable limit counts as: the kernel's default <c>fs.nr_open</c> (2^20).</summary>
    public const long Unlimited = 1 << 20;

    /// <summary>RLIMIT_NOFILE on Linux (x64 and arm64).</summary>
    private const int NoFile = 7;

    /// <summary>The soft limit in descriptors; <see cref="Unlimited"/> when it is RLIM_INFINITY, larger, or cannot be read.</summary>
    public static long Current()
    {
        ResourceLimit limit;
        if (!OperatingSystem.IsLinux() || GetResourceLimit(NoFile, &limit) != 0 || limit.Current > Unlimited)
        {
            return Unlimited;
        }

        return (long)limit.Current;
    }

    /// <summary>The process's open descriptors (entries of /proc/self/fd); null when they cannot be listed.</summary>
    public static int? OpenDescriptors()
    {
        try
        {
            return Directory.EnumerateFileSystemEntries("/proc/self/fd").Count();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    [LibraryImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    private static partial int GetResourceLimit(int resource, ResourceLimit* limit);

    /// <summary>struct rlimit: rlim_cur and rlim_max, each an unsigned long.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct ResourceLimit
    {
        public ulong Current;
        public ulong Maximum;
    }
}
