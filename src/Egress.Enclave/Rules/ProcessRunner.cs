using System.ComponentModel;
using System.Diagnostics;

namespace Egress.Enclave.Rules;

/// <summary>Runs short-lived system commands (ip, iptables); the seam that lets tests stand in for the system.</summary>
internal interface ICommandRunner
{
    /// <summary>Runs <paramref name="program"/> to completion; a program that cannot be started gives exit code 127.</summary>
    ProcessResult Run(string program, IReadOnlyList<string> arguments);

    /// <summary>Whether <paramref name="program"/> is on PATH (or in /usr/sbin, /sbin).</summary>
    bool Exists(string program);
}

/// <summary>Runs a short-lived system command (ip, iptables) and captures its exit code and output.</summary>
internal sealed class ProcessRunner : ICommandRunner
{
    public static readonly ProcessRunner Instance = new();

    private ProcessRunner()
    {
    }

    public ProcessResult Run(string program, IReadOnlyList<string> arguments)
    {
        var info = new ProcessStartInfo(FindOnPath(program) ?? program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        Process? started;
        try
        {
            started = Process.Start(info);
        }
        catch (Win32Exception ex)
        {
            return new ProcessResult(127, string.Empty, $"{program}: cannot run it: {ex.Message}");
        }

        using var process = started ?? throw new InvalidOperationException($"could not start {program}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            process.Kill(entireProcessTree: true);
            return new ProcessResult(-1, string.Empty, $"{program} did not finish within 30 s");
        }

        return new ProcessResult(process.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
    }

    public bool Exists(string program) => FindOnPath(program) is not null;

    private static string? FindOnPath(string program)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin";
        foreach (var dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries).Concat(["/usr/sbin", "/sbin"]))
        {
            var candidate = Path.Combine(dir, program);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}

/// <summary>What a finished command returned.</summary>
internal readonly record struct ProcessResult(int ExitCode, string StandardOutput, string StandardError);
