using System.Diagnostics;
using System.Text;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>Runs short-lived commands with a bounded time; a command that overruns is killed with its children.</summary>
internal static class Command
{
    public static Task<CommandResult> RunInNamespaceAsync(string name, TimeSpan timeout, params string[] command) =>
        RunAsync(["ip", "netns", "exec", name, .. command], timeout, standardInput: null);

    public static Task<CommandResult> RunInNamespaceAsync(string name, TimeSpan timeout, byte[] standardInput, params string[] command) =>
        RunAsync(["ip", "netns", "exec", name, .. command], timeout, standardInput);

    /// <summary>Runs <paramref name="command"/> (argv, no shell) to completion or until <paramref name="timeout"/>.</summary>
    public static async Task<CommandResult> RunAsync(IReadOnlyList<string> command, TimeSpan timeout, byte[]? standardInput = null)
    {
        var start = new ProcessStartInfo(command[0])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in command.Skip(1))
        {
            start.ArgumentList.Add(argument);
        }

        var stopwatch = Stopwatch.StartNew();
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {command[0]}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            if (standardInput is not null)
            {
                await process.StandardInput.BaseStream.WriteAsync(standardInput).ConfigureAwait(false);
            }

            process.StandardInput.Close();
        }
        catch (IOException)
        {
            // The command exited without reading its input; its exit code tells the story.
        }

        var timedOut = false;
        using (var cts = new CancellationTokenSource(timeout))
        {
            try
            {
                await process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                timedOut = true;
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync().ConfigureAwait(false);
            }
        }

        var elapsed = stopwatch.Elapsed;
        return new CommandResult(process.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false), timedOut, elapsed);
    }

    /// <summary>Runs a command that must succeed (setup steps); throws with its output otherwise.</summary>
    public static async Task<string> RunCheckedAsync(params string[] command)
    {
        var result = await RunAsync(command, TimeSpan.FromSeconds(15)).ConfigureAwait(false);
        if (result.ExitCode != 0 || result.TimedOut)
        {
            throw new InvalidOperationException($"`{Join(command)}` failed: {result}");
        }

        return result.StandardOutput;
    }

    public static string Join(IEnumerable<string> command)
    {
        var builder = new StringBuilder();
        foreach (var part in command)
        {
            if (builder.Length > 0)
            {
                builder.Append(' ');
            }

            builder.Append(part.Contains(' ', StringComparison.Ordinal) ? $"'{part}'" : part);
        }

        return builder.ToString();
    }
}
