using System.Runtime.InteropServices;
using Egress.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace Egress.Hosting;

/// <summary>What both hosts do the same way: logging, reading the configuration, waiting for a stop signal.</summary>
internal static class HostRuntime
{
    /// <summary>Exit code for a bad command line or configuration.</summary>
    public const int UsageError = 2;

    public static ILoggerFactory CreateLoggerFactory(string? level)
    {
        var minimum = level is null ? LogLevel.Information : Enum.Parse<LogLevel>(level, ignoreCase: true);
        return LoggerFactory.Create(builder => builder
            .SetMinimumLevel(minimum)
            .AddSimpleConsole(options =>
            {
                options.SingleLine = true;
                options.UseUtcTimestamp = true;
                options.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
                options.ColorBehavior = LoggerColorBehavior.Disabled;
            }));
    }

    public static bool IsValidLogLevel(string? level) =>
        level is null || Enum.TryParse<LogLevel>(level, ignoreCase: true, out _);

    /// <summary>Reads the configuration; on failure writes one <c>file:line:col</c> line and returns null.</summary>
    public static EgressConfiguration? LoadConfiguration(string? path, TextWriter error)
    {
        path ??= File.Exists("enclave.toml") ? "enclave.toml" : null;
        if (path is null)
        {
            error.WriteLine("error: no configuration: pass --config PATH (enclave.toml), or run where ./enclave.toml exists");
            return null;
        }

        try
        {
            return EgressConfiguration.Load(path);
        }
        catch (ConfigurationException ex)
        {
            error.WriteLine(ex.Message);
        }
        catch (IOException ex)
        {
            error.WriteLine($"{path}: error: cannot read the configuration: {ex.Message}");
        }
        catch (UnauthorizedAccessException ex)
        {
            error.WriteLine($"{path}: error: cannot read the configuration: {ex.Message}");
        }

        return null;
    }

    /// <summary>Completes when SIGTERM, SIGINT or SIGQUIT arrives (the signal is consumed: the caller shuts down).</summary>
    public static Task WaitForStopSignalAsync(out IDisposable registrations)
    {
        var stopped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var handlers = new List<PosixSignalRegistration>();
        foreach (var signal in new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGQUIT })
        {
            handlers.Add(PosixSignalRegistration.Create(signal, context =>
            {
                context.Cancel = true;
                stopped.TrySetResult();
            }));
        }

        registrations = new Registrations(handlers);
        return stopped.Task;
    }

    private sealed class Registrations(List<PosixSignalRegistration> handlers) : IDisposable
    {
        public void Dispose() => handlers.ForEach(h => h.Dispose());
    }
}
