using System.Runtime.InteropServices;

namespace Egress.Dns;

/// <summary>
/// The threads that serve DNS ahead of connection work (the forwarder's UDP receives, the tunnel DNS streams on both
/// hosts, the parent's upstream sockets): each a background thread of its own with a small stack, run
/// <see cref="PriorityBoost"/> nice levels above the process (setpriority(2) on the thread's TID; Linux schedules each
/// thread by its own nice value). While a flood of connections keeps both cores busy, a woken DNS thread then gets
/// the CPU ahead of the thread pool's workers and the flooding app (CFS weight 9,548 at nice -10 against 1,024 at 0).
/// Raising a priority needs root or CAP_SYS_NICE: without it the thread stays at the process's nice, still off the
/// thread pool. The work on these threads is a query's screening, forwarding and answer (no waits on the network).
/// </summary>
internal static partial class DnsThread
{
    /// <summary>The stack of each thread: the code on it is a query's path, never recursive.</summary>
    public const int StackBytes = 256 * 1024;

    /// <summary>How many nice levels above the process's own the threads run (bounded by -20).</summary>
    public const int PriorityBoost = 10;

    private const int PrioProcess = 0;
    private const int MostFavourable = -20;

    /// <summary>Starts <paramref name="body"/> on a new DNS thread.</summary>
    /// <param name="name">The thread's name (Linux shows its first 15 bytes in /proc/PID/task/TID/comm).</param>
    /// <param name="body">What the thread runs; it ends when this returns.</param>
    /// <param name="state">Passed to <paramref name="body"/>.</param>
    public static void Start(string name, Action<object?> body, object? state)
    {
        var thread = new Thread(
            static start =>
            {
                var (body, state) = ((Action<object?>, object?))start!;
                RaisePriority();
                body(state);
            },
            StackBytes)
        {
            IsBackground = true,
            Name = name,
        };
        thread.UnsafeStart((body, state));
    }

    /// <summary>Raises the calling thread's priority by <see cref="PriorityBoost"/> nice levels; false where it is
    /// not permitted (no CAP_SYS_NICE) or not Linux.</summary>
    internal static bool RaisePriority()
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        int tid = GetThreadId();
        Marshal.SetLastPInvokeError(0);
        int nice = GetPriority(PrioProcess, tid);
        if (nice == -1 && Marshal.GetLastPInvokeError() != 0)
        {
            return false;
        }

        return SetPriority(PrioProcess, tid, Math.Max(MostFavourable, nice - PriorityBoost)) == 0;
    }

    /// <summary>The calling thread's nice value; null where it cannot be read.</summary>
    internal static int? CurrentNice()
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        Marshal.SetLastPInvokeError(0);
        int nice = GetPriority(PrioProcess, GetThreadId());
        return nice == -1 && Marshal.GetLastPInvokeError() != 0 ? null : nice;
    }

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetThreadId();

    [LibraryImport("libc", EntryPoint = "getpriority", SetLastError = true)]
    private static partial int GetPriority(int which, int who);

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    private static partial int SetPriority(int which, int who, int priority);
}
