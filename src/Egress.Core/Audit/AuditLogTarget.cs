using System.Runtime.InteropServices;

namespace Egress.Audit;

/// <summary>
/// Whether a start could open an <c>audit_log</c> file (<see cref="AuditLog.Open"/>: append, created when missing),
/// found without opening or creating anything, for <c>--check-config</c>: a symbolic link is followed as open(2)
/// follows it (a dangling one names the file a start would create), and the rights are asked with access(2), so a FIFO
/// is never opened (opening one for writing waits for a reader; it is named as a named pipe). access(2) answers for the calling user, who may not
/// be the service's.
/// </summary>
internal static partial class AuditLogTarget
{
    private const int WriteOk = 2;
    private const int ExecuteOk = 1;
    private const int ExistsOk = 0;
    private const int NoSuchFile = 2;

    /// <summary>Checks <paramref name="target"/>.</summary>
    /// <param name="target">The <c>audit_log</c> value: <see cref="AuditLog.StandardOutput"/> or a path.</param>
    /// <param name="createdAtStart">A directory that something creates before the start when it is missing, and what
    /// (egress-host's systemd unit creates /var/log/egress, <c>LogsDirectory=egress</c>); null for none.</param>
    /// <param name="summary">What a start would do, e.g. <c>/var/log/egress/audit.jsonl (created at start)</c>.</param>
    /// <returns>Null when a start could open it; otherwise why not (e.g. <c>it is a directory</c>).</returns>
    public static string? Check(string target, (string Directory, string By)? createdAtStart, out string summary)
    {
        summary = target;
        if (target == AuditLog.StandardOutput)
        {
            return null;
        }

        string path = Path.GetFullPath(target);
        try
        {
            if (new FileInfo(path).LinkTarget is not null && File.ResolveLinkTarget(path, returnFinalTarget: true) is { } final)
            {
                path = final.FullName;
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // A loop of links (ELOOP), a link in a directory this user cannot read: open(2) fails there too.
            return ex.Message;
        }

        if (Directory.Exists(path))
        {
            return "it is a directory";
        }

        if (File.Exists(path))
        {
            summary = IsFifo(path)
                ? $"{target} (a named pipe: a start waits until a reader opens it, and cannot be stopped before then)"
                : $"{target} (exists; appended to)";
            return Access(path, WriteOk) == 0 ? null : $"it cannot be written ({LastError()})";
        }

        string directory = Path.GetDirectoryName(path) ?? "/";
        if (Access(directory, ExistsOk) != 0)
        {
            // Missing (ENOENT), or behind a directory this user cannot search (EACCES), which is not the same.
            bool missing = Marshal.GetLastPInvokeError() == NoSuchFile;
            if (missing && createdAtStart is { } created && created.Directory == directory)
            {
                summary = $"{target} (created at start; {directory} does not exist yet: {created.By} creates it)";
                return null;
            }

            return missing ? $"its directory {directory} does not exist" : $"its directory {directory} cannot be reached ({LastError()})";
        }

        if (!Directory.Exists(directory))
        {
            return $"{directory} is not a directory";
        }

        summary = $"{target} (created at start)";
        return Access(directory, WriteOk | ExecuteOk) == 0 ? null : $"it cannot be created in {directory} ({LastError()})";
    }

    /// <summary>Whether <paramref name="path"/> (links followed) is a FIFO, by statx(2), whose buffer has one layout on
    /// every architecture (stx_mode: 16 bits at byte 28; include/uapi/linux/stat.h). False where it cannot be told.</summary>
    private static bool IsFifo(string path)
    {
        const int AtFdCwd = -100;
        const uint StatxType = 0x1;
        const int ModeOffset = 28;
        const ushort TypeMask = 0xF000;
        const ushort Fifo = 0x1000;
        Span<byte> buffer = stackalloc byte[256]; // sizeof(struct statx)
        try
        {
            return Statx(AtFdCwd, path, 0, StatxType, buffer) == 0 && (MemoryMarshal.Read<ushort>(buffer[ModeOffset..]) & TypeMask) == Fifo;
        }
        catch (EntryPointNotFoundException)
        {
            return false; // a C library without statx (glibc before 2.28)
        }
    }

    private static string LastError() => Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError());

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int directory, string path, int flags, uint mask, Span<byte> buffer);

    [LibraryImport("libc", EntryPoint = "access", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Access(string path, int mode);
}
