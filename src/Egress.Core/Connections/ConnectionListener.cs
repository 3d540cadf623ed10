using System.Collections.Concurrent;
using System.Net.Sockets;
using Egress.Diagnostics;
using Egress.Sockets;
using Microsoft.Extensions.Logging;

namespace Egress.Connections;

/// <summary>
/// Accepts connections on one listening socket and runs a handler for each, tracking them so that a stop can let
/// live connections finish up to a deadline and then abort the rest. A failing handler never stops the loop.
/// Handlers get the abort token; long-lived handlers that sit idle between requests (a tunnel DNS stream) also
/// observe <see cref="Stopping"/> to end promptly once a stop begins instead of holding it for the whole drain.
/// With an <see cref="Admission"/>, a connection beyond its limit is refused with a logged reason: reset at once, or
/// handed to <see cref="Refused"/> (which answers it) while fewer than <see cref="MaxAnswering"/> are being answered.
/// A failed accept (out of descriptors) is retried after a back-off that grows while failures continue.
/// Refusals that are reset unanswered are logged at most once a second, each line saying how many more were refused
/// since the previous one: a flood of thousands of connections must not crowd the log (the hosts' logger drops lines
/// once 256 KiB wait, and a library consumer's console logger may instead make every logging thread wait, the DNS
/// forwarder's included).
/// With a <see cref="SetupLimit"/>, each admitted connection takes a place in it before its handler starts, and while
/// none is free the loop waits and accepts no more (the next connections wait in the kernel's listen backlog; a refused
/// connection needs no place); the handler gets the connection's <see cref="ConnectionSetup"/> to complete once the
/// connection is set up, and the place is given back at the latest when the handler ends.
/// </summary>
internal sealed partial class ConnectionListener : IAsyncDisposable
{
    /// <summary>The most refused connections answered at once; beyond, refused connections are reset unanswered.</summary>
    public const int MaxAnswering = 16;

    private readonly Socket _listener;
    private readonly Func<CancellationToken, ValueTask<Socket>> _accept;
    private readonly Func<Socket, ConnectionSetup, CancellationToken, Task> _handler;
    private readonly AcceptBackoff _backoff = new();
    private int _answering;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopAccepting = new();
    private readonly CancellationTokenSource _abortConnections = new();
    private readonly ConcurrentDictionary<long, Task> _connections = new();
    private long _nextId;
    private Task? _acceptLoop;
    private LogRateLimit? _refusedLines;

    public ConnectionListener(Socket listener, string name, Func<Socket, CancellationToken, Task> handler, ILogger logger)
        : this(listener, AcceptFor(listener), name, handler, logger)
    {
    }

    /// <summary>Creates a listener whose handler completes each connection's <see cref="ConnectionSetup"/> once the
    /// connection is set up (see <see cref="SetupLimit"/>).</summary>
    public ConnectionListener(Socket listener, string name, Func<Socket, ConnectionSetup, CancellationToken, Task> handler, ILogger logger)
        : this(listener, AcceptFor(listener), name, handler, logger)
    {
    }

    /// <summary>The runtime's accept, except on a Unix-domain listener on Linux (<see cref="UnixListenerAccept"/>: a peer
    /// bound to a longer path than the listener's would end the process in the runtime's).</summary>
    private static Func<CancellationToken, ValueTask<Socket>> AcceptFor(Socket listener) =>
        OperatingSystem.IsLinux() && listener.AddressFamily == AddressFamily.Unix ? UnixListenerAccept.For(listener) : listener.AcceptAsync;

    /// <summary>Creates a listener whose accepts are <paramref name="accept"/> (tests: an accept that fails).</summary>
    internal ConnectionListener(
        Socket listener, Func<CancellationToken, ValueTask<Socket>> accept, string name, Func<Socket, CancellationToken, Task> handler, ILogger logger)
        : this(listener, accept, name, (socket, _, aborted) => handler(socket, aborted), logger)
    {
    }

    /// <summary>Creates a listener whose accepts are <paramref name="accept"/> and whose handler completes each
    /// connection's setup (tests).</summary>
    internal ConnectionListener(
        Socket listener, Func<CancellationToken, ValueTask<Socket>> accept, string name, Func<Socket, ConnectionSetup, CancellationToken, Task> handler, ILogger logger)
    {
        _listener = listener;
        _accept = accept;
        Name = name;
        _handler = handler;
        _logger = logger;
    }

    /// <summary>What the listener serves and where, for logs.</summary>
    public string Name { get; }

    /// <summary>Connections currently being handled.</summary>
    public int ActiveConnections => _connections.Count;

    /// <summary>Gets how long a stop waits, after aborting, for handlers to notice; beyond it they are abandoned.</summary>
    public TimeSpan AbortGrace { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Gets what decides whether an accepted connection is served; null (the default) serves every one.</summary>
    public ConnectionAdmission? Admission { get; init; }

    /// <summary>Gets what answers a refused connection with its reason (e.g. a tunnel status) and closes it; null
    /// (the default) resets refused connections at once. Given the socket, the reason and the abort token.</summary>
    public Func<Socket, string, CancellationToken, Task>? Refused { get; init; }

    /// <summary>Gets where a connection refused and reset unanswered is counted (<c>egress.connections</c>, outcome
    /// <c>failed</c>, reason <see cref="ConnectionAdmission.LimitMetricReason"/> or
    /// <see cref="ConnectionAdmission.DescriptorMetricReason"/>); null (the default): not counted here (a
    /// <see cref="Refused"/> answer counts its own).</summary>
    public Diagnostics.EgressMetrics? RefusedMetrics { get; init; }

    /// <summary>Gets the most connections accepted and not yet set up, shared by the listeners of one service; null (the
    /// default): no limit.</summary>
    public ConnectionSetupLimit? SetupLimit { get; init; }

    /// <summary>The runtime switch (<see cref="AppContext"/>) behind <see cref="HandlersOnAcceptThreadByDefault"/>.</summary>
    internal const string HandlersOnAcceptThreadSwitch = "Egress.Connections.HandlersOnAcceptThread";

    /// <summary>Whether the process's runtime switch <c>Egress.Connections.HandlersOnAcceptThread</c> is on (both hosts
    /// set it in their runtimeconfig.json): the default the proxy's and the gateway's listeners give
    /// <see cref="HandlersOnAcceptThread"/>.</summary>
    internal static bool HandlersOnAcceptThreadByDefault => AppContext.TryGetSwitch(HandlersOnAcceptThreadSwitch, out bool on) && on;

    /// <summary>
    /// Gets whether an admitted connection's handler starts on the thread that accepted it and runs there up to its first
    /// wait (then the loop accepts the next), instead of being moved to the thread pool first: one thread hand-off (a
    /// futex wake, a worker's wake-up) fewer per connection. The accepting thread is the runtime's socket thread when
    /// the process asks for inline socket completions, as both hosts do, so only for handlers that neither block nor
    /// wait synchronously on a socket before their first asynchronous wait, in a process whose loggers never block (both
    /// hosts': their logger drops lines rather than wait). Off by default: a library caller's logger may block, as
    /// Microsoft's console logger does with a full queue, and every accept would wait behind it. A refused connection's
    /// answer (<see cref="Refused"/>) is always moved to the thread pool.
    /// </summary>
    public bool HandlersOnAcceptThread { get; init; }

    /// <summary>Gets the clock of the accept back-off.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Gets the open-files limit named when an accept fails for want of descriptors.</summary>
    public long OpenFileLimit { get; init; } = DescriptorBudget.Process.OpenFileLimit;

    /// <summary>Gets a token cancelled when a stop begins (accepting has ended; live connections may still drain).</summary>
    public CancellationToken Stopping => _stopAccepting.Token;

    public void Start() => _acceptLoop ??= Task.Run(AcceptLoopAsync);

    /// <summary>
    /// Stops accepting, waits for live connections up to <paramref name="drain"/>, then aborts them and waits a
    /// few seconds more; a handler that ignores its abort token is then abandoned (logged) so a stop always ends.
    /// </summary>
    public async Task StopAsync(TimeSpan drain)
    {
        if (!_stopAccepting.IsCancellationRequested)
        {
            await _stopAccepting.CancelAsync().ConfigureAwait(false);
        }

        _listener.Dispose();
        if (_acceptLoop is not null)
        {
            await _acceptLoop.ConfigureAwait(false);
        }

        Task[] running = [.. _connections.Values];
        var live = Task.WhenAll(running);
        bool draining = drain > TimeSpan.Zero && !live.IsCompleted;
        if (draining)
        {
            // An operator who sent SIGTERM sees what the stop waits for, and the line after it says how it ended.
            LogDraining(_logger, Name, running.Count(task => !task.IsCompleted), drain.TotalSeconds);
        }

        try
        {
            await live.WaitAsync(drain).ConfigureAwait(false);
            if (draining)
            {
                LogDrained(_logger, Name);
            }
        }
        catch (TimeoutException)
        {
            LogAborting(_logger, Name, _connections.Count);
            await _abortConnections.CancelAsync().ConfigureAwait(false);
            try
            {
                await live.WaitAsync(AbortGrace).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                LogAbandoned(_logger, Name, _connections.Count, AbortGrace.TotalMilliseconds);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.Zero).ConfigureAwait(false);
        _stopAccepting.Dispose();
        _abortConnections.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stopAccepting.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _accept(_stopAccepting.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException && _stopAccepting.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException ex)
            {
                // Out of descriptors, or a connection reset while queued: log the cause, back off, keep serving.
                var wait = _backoff.Failed();
                LogAcceptFailed(_logger, Name, AcceptFailure.Describe(ex, OpenFileLimit, Connections.OpenFileLimit.OpenDescriptors()), _backoff.Failures, wait.TotalMilliseconds);
                try
                {
                    await Task.Delay(wait, TimeProvider, _stopAccepting.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            _backoff.Succeeded();
            if (Admission is { } admission && !admission.TryAdmit(out string? refusal, out string? metricReason))
            {
                Refuse(socket, refusal, metricReason);
                continue;
            }

            ConnectionSetup setup = ConnectionSetup.None;
            if (SetupLimit is { } limit)
            {
                try
                {
                    // No free place: this connection waits for one, and the next ones wait in the kernel's listen
                    // backlog (this loop accepts no more) until a connection being set up relays or ends.
                    await limit.TakeAsync(_stopAccepting.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    Admission?.Release();
                    SocketReset.Reset(socket); // RST: the client fails at once instead of waiting on a connection never served
                    return;
                }

                setup = limit.Hold();
            }

            long id = Reserve();
            Tracked(id, RunAsync(id, socket, setup, admitted: Admission is not null));
        }
    }

    /// <summary>
    /// Tracked before it starts: <see cref="Reserve"/> enters a placeholder under a new id, the run is started with that
    /// id, and <see cref="Tracked"/> puts its task in the placeholder's place, so a handler that finishes at once still
    /// finds its entry to remove, and the task then replaces nothing (no entry is left behind). The run's own task is the
    /// entry (no wrapper task held for the connection's life, and no closure per connection); the run moves to the thread
    /// pool at its first line (<see cref="Task.Yield"/>), so the accept loop never runs a handler, unless
    /// <see cref="HandlersOnAcceptThread"/>: then it runs up to its first wait before the loop accepts again.
    /// </summary>
    private long Reserve()
    {
        var id = Interlocked.Increment(ref _nextId);
        _connections[id] = Task.CompletedTask;
        return id;
    }

    /// <summary>The second half of tracking a run (see <see cref="Reserve"/>).</summary>
    private void Tracked(long id, Task run) => _connections.TryUpdate(id, run, Task.CompletedTask);

    private void Refuse(Socket socket, string reason, string metricReason)
    {
        if (Refused is { } answer && Interlocked.Increment(ref _answering) <= MaxAnswering)
        {
            long id = Reserve();
            Tracked(id, AnswerRefusedAsync(id, socket, reason, answer));
            return;
        }

        if (Refused is not null)
        {
            Interlocked.Decrement(ref _answering);
        }

        _refusedLines ??= new LogRateLimit(TimeProvider, LogRateLimit.DefaultInterval, _logger, 15);
        if (_refusedLines.TryEnter(out long suppressed))
        {
            LogRefused(_logger, Name, RemoteOf(socket), reason, new HeldBackLines(suppressed, "refused"));
        }

        RefusedMetrics?.Connection("failed", metricReason);
        SocketReset.Reset(socket); // RST: the client fails at once instead of waiting on a connection never served
    }

    private async Task AnswerRefusedAsync(long id, Socket socket, string reason, Func<Socket, string, CancellationToken, Task> answer)
    {
        await Task.Yield(); // off the accept loop (Track)
        try
        {
            await answer(socket, reason, _abortConnections.Token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            LogHandlerFailed(_logger, ex, Name);
        }
        finally
        {
            socket.Dispose();
            Interlocked.Decrement(ref _answering);
            _connections.TryRemove(id, out _);
        }
    }

    /// <summary>The peer as a log line names it: its address, or what it is when it has none (a Unix-socket peer's
    /// address is empty: a trial read "refused connection from : stream limit reached").</summary>
    internal static string RemoteOf(Socket socket)
    {
        try
        {
            string? remote = socket.RemoteEndPoint?.ToString();
            return !string.IsNullOrEmpty(remote) ? remote
                : socket.AddressFamily == AddressFamily.Unix ? "an unnamed Unix-socket peer"
                : "(unnamed)";
        }
        catch (SocketException)
        {
            return "(gone)";
        }
    }

    private async Task RunAsync(long id, Socket socket, ConnectionSetup setup, bool admitted)
    {
        if (!HandlersOnAcceptThread)
        {
            await Task.Yield(); // off the accept loop (Track)
        }

        try
        {
            await (HandlersOnAcceptThread ? StartOnAcceptThread(socket, setup) : _handler(socket, setup, _abortConnections.Token)).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // A handler bug must cost one connection, never the process.
            LogHandlerFailed(_logger, ex, Name);
            socket.Dispose();
        }
        finally
        {
            setup.Complete(); // never set up (refused by the parent, denied, failed): the place is free again
            if (admitted)
            {
                Admission!.Release();
            }

            _connections.TryRemove(id, out _);
        }
    }

    /// <summary>Starts the handler on the accepting thread (<see cref="HandlersOnAcceptThread"/>), its part up to its first
    /// wait under the epoll threads' rules (<see cref="SocketReadiness.EnterEpollThreadRules"/>): what a handler hands to
    /// the thread pool from an epoll thread (a DNS stream served for its life, a resolution, the lines of a refusal), it
    /// hands there from the accepting thread too.</summary>
    private Task StartOnAcceptThread(Socket socket, ConnectionSetup setup)
    {
        bool previous = SocketReadiness.EnterEpollThreadRules();
        try
        {
            return _handler(socket, setup, _abortConnections.Token);
        }
        finally
        {
            SocketReadiness.ExitEpollThreadRules(previous);
        }
    }

    [LoggerMessage(EventId = 11, Level = LogLevel.Warning, Message = "{Listener}: accept failed: {Cause}; retrying in {WaitMs} ms ({Failures} in a row)")]
    private static partial void LogAcceptFailed(ILogger logger, string listener, string cause, int failures, double waitMs);

    [LoggerMessage(EventId = 15, Level = LogLevel.Warning, Message = "{Listener}: refused connection from {Remote}: {Reason}{Suppressed:line}")]
    private static partial void LogRefused(ILogger logger, string listener, string remote, string reason, HeldBackLines suppressed);

    [LoggerMessage(EventId = 12, Level = LogLevel.Error, Message = "{Listener}: connection handler failed")]
    private static partial void LogHandlerFailed(ILogger logger, Exception exception, string listener);

    [LoggerMessage(EventId = 17, Level = LogLevel.Information, Message = "{Listener}: stopping: accepting no more; {Count} live connection(s) may finish for up to {DrainSeconds} s")]
    private static partial void LogDraining(ILogger logger, string listener, int count, double drainSeconds);

    [LoggerMessage(EventId = 18, Level = LogLevel.Information, Message = "{Listener}: stopped: every live connection ended within the drain")]
    private static partial void LogDrained(ILogger logger, string listener);

    [LoggerMessage(EventId = 13, Level = LogLevel.Warning, Message = "{Listener}: shutdown deadline reached, aborting {Count} live connection(s)")]
    private static partial void LogAborting(ILogger logger, string listener, int count);

    [LoggerMessage(EventId = 14, Level = LogLevel.Error, Message = "{Listener}: {Count} connection handlers ignored the abort for {GraceMs} ms; stopping without them")]
    private static partial void LogAbandoned(ILogger logger, string listener, int count, double graceMs);
}
