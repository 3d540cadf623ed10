using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;

namespace Egress.Tests.Interception;

/// <summary>
/// A throwaway Linux network namespace. Sockets for it are created on a dedicated thread that first enters the
/// namespace with setns(2) (which affects only the calling thread); a socket keeps its namespace for life, so it can
/// then be used from any thread.
/// </summary>
internal sealed partial class NetworkNamespace : IDisposable
{
    private const int CloneNewNet = 0x40000000;

    private NetworkNamespace(string name) => Name = name;

    public string Name { get; }

    /// <summary>Why namespace tests cannot run here, or <see langword="null"/> when they can.</summary>
    public static string? Unavailability()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "network namespaces need Linux";
        }

        if (!Environment.IsPrivilegedProcess)
        {
            return "creating a network namespace and iptables rules needs root";
        }

        string[] missing = ["ip", "iptables", "ip6tables"];
        missing = [.. missing.Where(tool => !OnPath(tool))];
        return missing.Length == 0 ? null : $"missing tools: {string.Join(", ", missing)} (apt-get install iproute2 iptables)";
    }

    /// <summary>
    /// Creates a namespace named <c>egress-od-RANDOM</c> with <c>lo</c> up and default routes via <c>lo</c>, or, when
    /// <paramref name="bare"/>, as the kernel makes it (only <c>lo</c>, down, no routes).
    /// </summary>
    public static NetworkNamespace Create(bool bare = false)
    {
        var ns = new NetworkNamespace($"egress-od-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}");
        Run("ip", "netns", "add", ns.Name);
        if (bare)
        {
            return ns;
        }

        try
        {
            ns.Run("ip", "link", "set", "lo", "up");
            ns.Run("ip", "route", "add", "default", "dev", "lo");
            ns.Run("ip", "-6", "route", "add", "default", "dev", "lo");
            return ns;
        }
        catch
        {
            ns.Dispose();
            throw;
        }
    }

    /// <summary>Runs a command inside the namespace (<c>ip netns exec</c>); throws with its stderr if it fails.</summary>
    /// <returns>What the command wrote to standard output.</returns>
    public string Run(params string[] command) => Run("ip", ["netns", "exec", Name, .. command]);

    /// <summary>Runs <paramref name="create"/> on a new thread that has entered the namespace.</summary>
    public T InNamespace<T>(Func<T> create)
    {
        T? result = default;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using SafeFileHandle handle = File.OpenHandle($"/var/run/netns/{Name}", FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                if (SetNs(handle, CloneNewNet) != 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    throw new IOException($"setns({Name}) failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})");
                }

                result = create();
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        return failure is null ? result! : throw new InvalidOperationException($"in network namespace {Name}: {failure.Message}", failure);
    }

    public void Dispose() => Run("ip", "netns", "delete", Name);

    private static string Run(string fileName, params string[] arguments)
    {
        var start = new ProcessStartInfo(fileName) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{fileName} {string.Join(' ', arguments)}' exited with {process.ExitCode}: {stderr.Trim()}");
        }

        return stdout.GetAwaiter().GetResult();
    }

    private static bool OnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty)
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Any(directory => File.Exists(Path.Combine(directory, tool)));

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNs(SafeFileHandle fd, int namespaceType);
}
