using System.Collections.Concurrent;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Egress.Connections;

/// <summary>
/// Accepts connections on one listening socket and runs a handler for each, tracking them so that a stop can let
/// live connections finish up to a deadline and then abort the rest. A failing handler never stops the loop.
/// Handlers get the abort token; long-lived handlers that sit idle between requests (a tunnel DNS stream) also
/// observe <see cref="Stopping"/> to end promptly once a stop begins instead of holding it for the whole drain.
/// </summary>
internal sealed partial class ConnectionListener : IAsyncDisposable
{
    private static readonly TimeSpan AcceptErrorBackoff = TimeSpan.FromMilliseconds(50);

    private readonly Socket _listener;
    private readonly Func<Socket, CancellationToken, Task> _handler;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopAccepting = new();
    private readonly CancellationTokenSource _abortConnections = new();
    private readonly ConcurrentDictionary<long, Task> _connections = new();
    private long _nextId;
    private Task? _acceptLoop;

    public ConnectionListener(Socket listener, string name, Func<Socket, CancellationToken, Task> handler, ILogger logger)
    {
        _listener = listener;
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

        var live = Task.WhenAll(_connections.Values);
        try
        {
            await live.WaitAsync(drain).ConfigureAwait(false);
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
                socket = await _listener.AcceptAsync(_stopAccepting.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException && _stopAccepting.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException ex)
            {
                // Out of descriptors, or a connection reset while queued: log, back off briefly, keep serving.
                LogAcceptFailed(_logger, Name, ex.SocketErrorCode);
                await Task.Delay(AcceptErrorBackoff).ConfigureAwait(false);
                continue;
            }

            // Tracked before it starts: a handler that finishes at once must still find its entry to remove.
            var id = Interlocked.Increment(ref _nextId);
            var run = new Task<Task>(() => RunAsync(id, socket));
            _connections[id] = run.Unwrap();
            run.Start(TaskScheduler.Default);
        }
    }

    private async Task RunAsync(long id, Socket socket)
    {
        try
        {
            await _handler(socket, _abortConnections.Token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // A handler bug must cost one connection, never the process.
            LogHandlerFailed(_logger, ex, Name);
            socket.Dispose();
        }
        finally
        {
            _connections.TryRemove(id, out _);
        }
    }

    [LoggerMessage(EventId = 11, Level = LogLevel.Warning, Message = "{Listener}: accept failed ({Error}); retrying")]
    private static partial void LogAcceptFailed(ILogger logger, string listener, SocketError error);

    [LoggerMessage(EventId = 12, Level = LogLevel.Error, Message = "{Listener}: connection handler failed")]
    private static partial void LogHandlerFailed(ILogger logger, Exception exception, string listener);

    [LoggerMessage(EventId = 13, Level = LogLevel.Warning, Message = "{Listener}: shutdown deadline reached, aborting {Count} live connections")]
    private static partial void LogAborting(ILogger logger, string listener, int count);

    [LoggerMessage(EventId = 14, Level = LogLevel.Error, Message = "{Listener}: {Count} connection handlers ignored the abort for {GraceMs} ms; stopping without them")]
    private static partial void LogAbandoned(ILogger logger, string listener, int count, double graceMs);
}
