using System.Net.Sockets;

namespace Egress.Gateway;

/// <summary>
/// Turns TCP keepalive on for destination sockets that are still open one to two seconds after their connect, instead of
/// at the connect: four setsockopt(2) calls (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT) that a connection
/// ending sooner never pays, which most relayed connections (an HTTP request on its own connection) do. Keepalive only
/// acts after <see cref="TcpKeepAlive.Idle"/> (at least a second) without traffic, so a connection that lives long
/// enough to need it has it, from one to two seconds later than the connect.
/// </summary>
/// <remarks>
/// One timer (the given clock's, every <see cref="Delay"/>) serves every socket: a socket added during one period is
/// armed at the end of the next, so an entry is held one to two periods and then dropped (a reference only: its owner
/// disposes it as ever, and a closed socket is skipped). The timer runs only while sockets are waiting, so a gateway
/// that goes quiet holds none. Thread-safe; <see cref="Add"/> takes a short lock and never blocks on the timer's work.
/// </remarks>
/// <param name="keepAlive">What to set; when <see cref="TcpKeepAlive.Enabled"/> is false, nothing is ever set.</param>
/// <param name="timeProvider">The clock of the timer.</param>
internal sealed class DeferredKeepAlive(TcpKeepAlive keepAlive, TimeProvider timeProvider)
{
    /// <summary>The timer's period: a socket is armed one to two of these after <see cref="Add"/>.</summary>
    public static readonly TimeSpan Delay = TimeSpan.FromSeconds(1);

    // A list kept for reuse is dropped instead when a burst grew it past this: the burst's memory is not held for ever.
    private const int KeptCapacity = 4096;

    private readonly Lock _lock = new();
    private List<Socket> _young = []; // added during the current period
    private List<Socket> _due = []; // added during the previous one: armed at the next tick
    private List<Socket>? _spare;
    private ITimer? _timer;

    /// <summary>What is set.</summary>
    public TcpKeepAlive KeepAlive => keepAlive;

    /// <summary>How many sockets wait to be armed.</summary>
    internal int Waiting
    {
        get
        {
            lock (_lock)
            {
                return _young.Count + _due.Count;
            }
        }
    }

    /// <summary>Whether the timer runs (it does only while sockets wait).</summary>
    internal bool TimerRunning
    {
        get
        {
            lock (_lock)
            {
                return _timer is not null;
            }
        }
    }

    /// <summary>Arms <paramref name="socket"/> one to two <see cref="Delay"/>s from now if it is still open then; nothing
    /// when keepalive is off.</summary>
    public void Add(Socket socket)
    {
        if (!keepAlive.Enabled)
        {
            return;
        }

        lock (_lock)
        {
            _young.Add(socket);
            _timer ??= timeProvider.CreateTimer(static state => ((DeferredKeepAlive)state!).Tick(), this, Delay, Delay);
        }
    }

    /// <summary>Arms the sockets added during the previous period; stops the timer when none are left waiting.</summary>
    internal void Tick()
    {
        List<Socket> due;
        lock (_lock)
        {
            due = _due;
            _due = _young;
            _young = _spare ?? [];
            _spare = null;
            if (due.Count == 0 && _due.Count == 0)
            {
                _timer?.Dispose();
                _timer = null;
                _spare = due;
                return;
            }
        }

        foreach (Socket socket in due)
        {
            Arm(socket);
        }

        due.Clear();
        if (due.Capacity <= KeptCapacity)
        {
            lock (_lock)
            {
                _spare = due;
            }
        }
    }

    private void Arm(Socket socket)
    {
        if (socket.SafeHandle.IsClosed)
        {
            return;
        }

        try
        {
            keepAlive.Apply(socket);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
        {
            // Closed meanwhile (its relay ended), or reset by the destination: nothing left to keep alive.
        }
    }
}
