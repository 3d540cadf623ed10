using System.Diagnostics;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// A long-running process (a host, nginx, dnsmasq) whose stdout and stderr lines are kept for assertions.
/// Disposing kills the whole process tree and waits for it to exit.
/// </summary>
internal sealed class BackgroundProcess : IAsyncDisposable
{
    private readonly Process process;
    private readonly List<string> lines = [];
    private readonly List<string> errorLines = [];
    private readonly TaskCompletionSource exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int? exitCode;
    private int disposed;

    private BackgroundProcess(string name, Process process)
    {
        Name = name;
        this.process = process;
    }

    public string Name { get; }

        public bool HasExited => exited.Task.IsCompleted;

    public int? ExitCode => exitCode;

    public int Id { get; private set; }

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (lines)
            {
                return [.. lines];
            }
        }
    }

    /// <summary>The lines written to stderr alone (they are in <see cref="Lines"/> too, in order with stdout's).</summary>
    public IReadOnlyList<string> ErrorLines
    {
        get
        {
            lock (lines)
            {
                return [.. errorLines];
            }
        }
    }

    public string Output => string.Join('\n', Lines);

    public static BackgroundProcess Start(string name, IReadOnlyList<string> command)
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

        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        var background = new BackgroundProcess(name, process);
        process.OutputDataReceived += (_, e) => background.Append(e.Data);
        process.ErrorDataReceived += (_, e) => background.Append(e.Data, stderr: true);
        process.Exited += (_, _) =>
        {
            background.exitCode = process.ExitCode;
            background.exited.TrySetResult();
        };
        if (!process.Start())
        {
            throw new InvalidOperationException($"could not start {Command.Join(command)}");
        }

        background.Id = process.Id;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        ResourceLedger.Track(background);
        TestContext.Progress.WriteLine($"[harness] started {name} (pid {process.Id}): {Command.Join(command)}");
        return background;
    }

    /// <summary>Waits for a line matching <paramref name="predicate"/>; returns it, or null after <paramref name="timeout"/>.</summary>
    public async Task<string?> WaitForLineAsync(Func<string, bool> predicate, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var match = Lines.FirstOrDefault(predicate);
            if (match is not null || DateTime.UtcNow >= deadline)
            {
                return match;
            }

            await Task.Delay(25).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0)
        {
            return;
        }

        if (!HasExited)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Exited between the check and the kill.
            }
        }

        await process.WaitForExitAsync().ConfigureAwait(false);
        await exited.Task.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        process.Dispose();
    }

    public override string ToString() =>
        $"{Name} ({(exitCode is { } code ? $"exited {code}" : "running")}) output:\n{Output}";

    private void Append(string? line, bool stderr = false)
    {
        if (line is null)
        {
            return;
        }

        lock (lines)
        {
            lines.Add(line);
            if (stderr)
            {
                errorLines.Add(line);
            }
        }
    }
}
