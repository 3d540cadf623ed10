using System.Diagnostics;
using System.Globalization;

namespace Egress.Stress;

/// <summary>
/// Samples named processes every <c>intervalMs</c> for <c>seconds</c>: resident set size (VmRSS, and the kernel's own
/// peak VmHWM), open descriptors (<see cref="OpenDescriptors"/>), and whether the process still runs (gone, or a zombie
/// its parent has not reaped yet, counts as exited). Reports per name the peaks in MiB and descriptors, and when it
/// exited (-1: still running at the end).
/// </summary>
internal static class ProcessMonitor
{
    public static async Task<int> RunAsync(IReadOnlyList<(string Name, int Pid)> processes, int intervalMs, double seconds)
    {
        long start = Stopwatch.GetTimestamp();
        var peakRssKib = new long[processes.Count];
        var peakFds = new int[processes.Count];
        var exitedAt = Enumerable.Repeat(-1.0, processes.Count).ToArray();
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(intervalMs));
        do
        {
            for (int i = 0; i < processes.Count; i++)
            {
                if (exitedAt[i] >= 0)
                {
                    continue;
                }

                if (Sample(processes[i].Pid) is not { } sample)
                {
                    exitedAt[i] = Stopwatch.GetElapsedTime(start).TotalSeconds;
                    continue;
                }

                peakRssKib[i] = Math.Max(peakRssKib[i], Math.Max(sample.RssKib, sample.HwmKib));
                peakFds[i] = Math.Max(peakFds[i], sample.Fds);
            }
        }
        while (Stopwatch.GetElapsedTime(start).TotalSeconds < seconds && await timer.WaitForNextTickAsync().ConfigureAwait(false));

        var report = new Report();
        for (int i = 0; i < processes.Count; i++)
        {
            string name = processes[i].Name;
            report.Add($"{name}_peak_rss_mib", peakRssKib[i] / 1024.0).Add($"{name}_peak_fds", peakFds[i]).Add($"{name}_exited_after_s", exitedAt[i]);
        }

        Console.WriteLine(report);
        return 0;
    }

    private static (long RssKib, long HwmKib, int Fds)? Sample(int pid)
    {
        try
        {
            long rss = -1;
            long hwm = 0;
            foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("State:", StringComparison.Ordinal) && line.Contains("zombie", StringComparison.Ordinal))
                {
                    return null;
                }

                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    rss = Kib(line);
                }
                else if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    hwm = Kib(line);
                }
            }

            if (rss < 0)
            {
                return null; // exiting: the memory is gone already
            }

            return (rss, hwm, OpenDescriptors(pid));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// How many descriptors <paramref name="pid"/> has open: the size stat(2) gives <c>/proc/PID/fd</c> (Linux 6.2 and
    /// later), which the kernel counts from the descriptor bitmap; listing the directory instead takes about 2 ms of
    /// kernel time per 3,600 descriptors, which sampled every 200 ms on two hosts measurably lengthened the victim's
    /// DNS answers in scenario 1 (docs/stress.md). Older kernels report 0 there: then the entries are counted.
    /// </summary>
    private static int OpenDescriptors(int pid)
    {
        string path = $"/proc/{pid}/fd";
        if (Mono.Unix.Native.Syscall.stat(path, out var status) == 0 && status.st_size > 0)
        {
            return (int)status.st_size;
        }

        return Directory.EnumerateFileSystemEntries(path).Count();
    }

    private static long Kib(string line) =>
        long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), NumberStyles.None, CultureInfo.InvariantCulture);
}
