using System.Runtime.InteropServices;
using Egress.Configuration;

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

    /// <summary>Whether <paramref name="path"/> (links followed) is a FIFO; false where it cannot be told.</summary>
    private static bool IsFifo(string path)
    {
        try
        {
            return PathFileType.Of(path, followLinks: true) == PathFileType.Fifo;
        }
        catch (Exception ex) when (ex is IOException or EntryPointNotFoundException)
        {
            return false; // a C library without statx (glibc before 2.28), or a path that vanished meanwhile
        }
    }

    private static string LastError() => Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError());

    [LibraryImport("libc", EntryPoint = "access", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Access(string path, int mode);
}
