namespace Egress.IntegrationTests.Infrastructure;

/// <summary>The outcome of a bounded command run.</summary>
internal sealed record CommandResult(int ExitCode, string StandardOutput, string StandardError, bool TimedOut, TimeSpan Elapsed)
{
    public override string ToString() =>
        $"exit {ExitCode}{(TimedOut ? " (killed on timeout)" : "")} after {Elapsed.TotalMilliseconds:F0} ms\nstdout: {StandardOutput}\nstderr: {StandardError}";
}
