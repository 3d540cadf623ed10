using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Egress.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace Egress.Hosting;

/// <summary>What both hosts do the same way: options, logging, reading the configuration, running the Generic Host.</summary>
internal static class HostRuntime
{
    /// <summary>Exit code for a runtime failure (a listener cannot bind, the host fails to start).</summary>
    public const int RuntimeError = 1;

    /// <summary>Exit code for a bad command line or configuration.</summary>
    public const int UsageError = 2;

    /// <summary>The log levels <c>--log-level</c> accepts, by name only.</summary>
    public const string LogLevelNames = "Trace, Debug, Information, Warning, Error, Critical";

    /// <summary>How long a stop may take beyond the drain: the abort, the handlers' grace and the sockets' close.</summary>
    private static readonly TimeSpan StopMargin = TimeSpan.FromSeconds(10);

    /// <summary>The .NET runtime's switch that runs socket continuations on the epoll thread instead of the thread pool.</summary>
    public const string InlineSocketCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>
    /// Turns on inline socket completions unless the environment already decides (set it to 0 to opt out). The relay's
    /// continuations only copy bytes and never block, so running them on the epoll thread saves a thread-pool hand-off
    /// per chunk and per hop: measured with benchmarks/run.sh, CPU per hop during bulk transfer fell from 83 % / 72 % to
    /// 64 % / 46 % of a core and the 1-byte RTT p99 from ~1.4 ms to ~0.14 ms. The runtime reads the variable when the
    /// first socket is used, so this must run before any socket exists (first thing in Main).
    /// </summary>
    public static void PreferInlineSocketCompletions()
    {
        if (Environment.GetEnvironmentVariable(InlineSocketCompletionsVariable) is null)
        {
            Environment.SetEnvironmentVariable(InlineSocketCompletionsVariable, "1");
        }
    }

    /// <summary>Parses <c>--log-level</c> by name (case-insensitive; numbers such as "42" are refused).</summary>
    public static bool TryParseLogLevel(string? text, out LogLevel level)
    {
        level = LogLevel.Information;
        if (text is null)
        {
            return true;
        }

        foreach (var name in Enum.GetNames<LogLevel>())
        {
            if (name != nameof(LogLevel.None) && string.Equals(name, text, StringComparison.OrdinalIgnoreCase))
            {
                level = Enum.Parse<LogLevel>(name);
                return true;
            }
        }

        return false;
    }

    /// <summary>Parses <c>--log-format</c>: <c>text</c> (default) or <c>json</c>.</summary>
    public static bool TryParseLogFormat(string? text, out bool json)
    {
        json = string.Equals(text, "json", StringComparison.Ordinal);
        return text is null or "text" or "json";
    }

    /// <summary>
    /// Whether this process is a systemd service's main process: systemd (v248 and later) sets <c>SYSTEMD_EXEC_PID</c>
    /// to it. Microsoft.Extensions.Hosting.Systemd 10.0's own test (<see cref="SystemdHelpers.IsSystemdService"/>) reads
    /// <c>/proc/PPID/comm</c> instead, which the shipped unit hides from its dynamic user (<c>ProtectProc=invisible</c>
    /// hides other users' processes, PID 1 among them): it answered false there, so egress-host never sent READY=1 and
    /// systemd, waiting for it (<c>Type=notify</c>), stopped the service after <c>TimeoutStartSec</c> and restarted it,
    /// again and again. The library's test is kept for a systemd older than v248.
    /// </summary>
    public static bool IsSystemdService() =>
        (int.TryParse(Environment.GetEnvironmentVariable("SYSTEMD_EXEC_PID"), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)
            && pid == Environment.ProcessId)
        || SystemdHelpers.IsSystemdService();

    /// <summary>
    /// A Generic Host builder without the defaults (no appsettings.json, no environment variables, no command-line
    /// configuration): logging to the console in the chosen format, under systemd its lifetime (sd_notify READY once
    /// every listener is bound, STOPPING on SIGTERM) and journald's format for text, and a shutdown timeout that
    /// covers the drain. Log lines go to <paramref name="logOutput"/> (stdout unless given); disposing the host waits at
    /// most <paramref name="logFlushTimeout"/> (<see cref="LogBatchWriter.DefaultFlushTimeout"/> unless given) for the
    /// lines still queued.
    /// </summary>
    public static HostApplicationBuilder CreateBuilder(
        LogLevel level, bool json, TimeSpan drain, Func<Stream>? logOutput = null, TimeSpan? logFlushTimeout = null)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            DisableDefaults = true,
            ApplicationName = "egress",
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Services.Configure<HostOptions>(options => options.ShutdownTimeout = drain + StopMargin);
        builder.Services.Configure<ConsoleLifetimeOptions>(options => options.SuppressStatusMessages = true);
        bool systemd = IsSystemdService();
        if (systemd)
        {
            // What AddSystemd() registers, but on this process's own detection (IsSystemdService below).
            builder.Services.AddSingleton<ISystemdNotifier, SystemdNotifier>();
            builder.Services.AddSingleton<IHostLifetime, SystemdLifetime>();
        }

        builder.Services.AddMetrics();

        var logging = builder.Logging;
        logging.ClearProviders();
        logging.SetMinimumLevel(level);

        // The hosting infrastructure's own lines (started, stopping) add nothing to the hosts' own, and a start
        // failure is reported by RunAsync as one line on stderr rather than a stack trace.
        logging.AddFilter("Microsoft", LogLevel.Warning);
        logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.Critical);
        if (json)
        {
            logging.AddJsonConsole(options =>
            {
                options.UseUtcTimestamp = true;
                options.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                options.JsonWriterOptions = new JsonWriterOptions { Indented = false };
            });
        }
        else if (systemd)
        {
            // journald stamps each line itself and reads the <N> priority prefix.
            logging.AddSystemdConsole();
        }
        else
        {
            logging.AddSimpleConsole(options =>
            {
                options.SingleLine = true;
                options.UseUtcTimestamp = true;
                options.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
                options.ColorBehavior = LoggerColorBehavior.Disabled;
            });
        }

        // A log line never makes its caller wait: a connection's set-up and end run on the threads that move relayed
        // bytes, so a stdout nobody reads (a stalled shipper, a terminal paused with Ctrl-S) would stall every relay
        // (StalledLogTests), and waking a writer and writing once per line cost 15 % of the connections/s. Lines are
        // written in batches; once too many wait, they are dropped and counted in a line of their own.
        BatchedConsoleLoggerProvider.ReplaceConsoleLogger(
            logging, logOutput ?? Console.OpenStandardOutput, logFlushTimeout ?? LogBatchWriter.DefaultFlushTimeout);
        return builder;
    }

    /// <summary>
    /// Logs, under <paramref name="category"/>, the two lines every start begins with: <see cref="HostVersion.Text"/>
    /// and the policy digest, which the other side logs too (they differ when the two read different policies); and,
    /// when a stop begins and when it has ended, a <c>stopping</c> and a <c>stopped</c> line. With
    /// <paramref name="policyPerEnclave"/> (egress-host with <c>[[host.enclaves]]</c>) the file's own <c>[egress]</c>
    /// decides no stream, so its digest is not logged: the second line says that each entry's policy line, which the
    /// gateway logs when it starts, is the one to compare instead. Also makes SIGHUP a warning line instead of its
    /// default action (the end of the process), for as long as the host runs.
    /// </summary>
    public static void LogStart(IHost host, string category, PolicyDigest policy, bool policyPerEnclave = false)
    {
        var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger(category);
        HostLog.Starting(logger, HostVersion.Text);

        // A stop says it began and that it ended, also with no live connection to drain (whose lines would say so):
        // otherwise a log ended at its last connection's line, as after a SIGKILL (a trial found no line either way).
        var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
        lifetime.ApplicationStopping.Register(() => HostLog.Stopping(logger));
        lifetime.ApplicationStopped.Register(() => HostLog.Stopped(logger));

        // SIGHUP's default action ends the process at once: no drain, no line, live connections cut (a destination saw
        // a cut-short upload end with a FIN), and systemd's Restart=on-failure does not restart a process SIGHUP ended.
        // Operators and tools (logrotate) send it expecting a reload, which neither host does: ignore it, and say so.
        var hangup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true;
            HostLog.HangupIgnored(logger);
        });
        lifetime.ApplicationStopped.Register(hangup.Dispose);
        if (policyPerEnclave)
        {
            HostLog.PolicyPerEnclave(logger);
        }
        else
        {
            HostLog.Policy(logger, policy);
        }
    }

    /// <summary>
    /// Starts the host (every listener binds), waits for SIGTERM/SIGINT/SIGQUIT and stops it (drain, then abort).
    /// A listener that cannot bind ends the run with one clear line on stderr and <see cref="RuntimeError"/>; so does
    /// any other start failure <paramref name="describeStartFailure"/> recognises, after the log lines written so far.
    /// The line goes to <paramref name="error"/> (stderr unless given).
    /// </summary>
    public static async Task<int> RunAsync(IHost host, Func<Exception, string?>? describeStartFailure = null, TextWriter? error = null)
    {
        error ??= Console.Error;
        string? failure = null;
        var code = RuntimeError;
        try
        {
            await host.StartAsync().ConfigureAwait(false);
        }
        catch (IOException ex)
        {
            // A listener that cannot bind (AddEgressEnclave/AddEgressHost: the message names the address and why).
            failure = $"error: {ex.Message}";
        }
        catch (Egress.Configuration.ConfigurationException ex)
        {
            // A setting that can only be tried at start (an audit_log file that cannot be opened): file:line:col and why.
            failure = ex.Message;
            code = UsageError;
        }
        catch (Exception ex) when (describeStartFailure?.Invoke(ex) is { } message)
        {
            failure = $"error: {message}";
        }

        if (failure is not null)
        {
            // The log lines written so far (the start lines) go out first, so the error is the last line either way.
            host.Dispose();
            await error.WriteLineAsync(failure).ConfigureAwait(false);
            return code;
        }

        await host.WaitForShutdownAsync().ConfigureAwait(false);
        return 0;
    }

    /// <summary>
    /// Reads the configuration; on failure writes one <c>file:line:col</c> line and returns null. A valid configuration
    /// with entries that are probably not meant (<see cref="ConfiguredComponents.GetWarnings"/>) gets one
    /// <c>file:line:col: warning:</c> line per entry and is returned.
    /// </summary>
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
            var configuration = EgressConfiguration.Load(path);
            foreach (var warning in configuration.GetWarnings())
            {
                error.WriteLine(warning);
            }

            return configuration;
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
}
