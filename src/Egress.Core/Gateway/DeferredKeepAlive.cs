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
/// armed at the end of the next, so an entry is held one to two periods. Its owner takes it out with
/// <see cref="Remove"/> before closing it, so a connection that ends sooner is not kept reachable by the list for the
/// rest of its period (which would carry its objects into an older GC generation); a socket closed without that is
/// skipped. The timer runs only while sockets are waiting, so a gateway that goes quiet holds none. Thread-safe;
/// <see cref="Add"/> and <see cref="Remove"/> take a short lock and never wait for the timer's work. A close that lands
/// while the timer's setsockopt holds the socket's handle may be an abortive one (the runtime's close of a handle in use),
/// as for any other operation on the socket at that moment; the relay's own clean end shuts the sending side down first.
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
    private List<Socket?> _young = []; // added during the current period (null: removed)
    private List<Socket?> _due = []; // added during the previous one: armed at the next tick
    private List<Socket?>? _spare;
    private long _period = 1; // the period _young belongs to; _due's is one less
    private ITimer? _timer;

    /// <summary>Where <see cref="Add"/> put a socket, for <see cref="Remove"/>; <c>default</c>: nowhere (keepalive off).</summary>
    internal readonly record struct Ticket(long Period, int Index);

    /// <summary>What is set.</summary>
    public TcpKeepAlive KeepAlive => keepAlive;

    /// <summary>How many sockets wait to be armed.</summary>
    internal int Waiting
    {
        get
        {
            lock (_lock)
            {
                return _young.Count(static socket => socket is not null) + _due.Count(static socket => socket is not null);
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
    /// <returns>What <see cref="Remove"/> takes before the socket is closed.</returns>
    public Ticket Add(Socket socket)
    {
        if (!keepAlive.Enabled)
        {
            return default;
        }

        lock (_lock)
        {
            _young.Add(socket);
            if (_timer is null)
            {
                // Not the first caller's execution context (its async-locals) for the timer's life.
                using (ExecutionContext.SuppressFlow())
                {
                    _timer = timeProvider.CreateTimer(static state => ((DeferredKeepAlive)state!).Tick(), this, Delay, Delay);
                }
            }

            return new Ticket(_period, _young.Count - 1);
        }
    }

    /// <summary>Takes a socket that <see cref="Add"/> returned <paramref name="ticket"/> for out before it is armed
    /// (nothing if it already was, or for <c>default</c>): for its owner, before closing it.</summary>
    public void Remove(Ticket ticket)
    {
        if (ticket.Period == 0)
        {
            return;
        }

        lock (_lock)
        {
            List<Socket?>? list = ticket.Period == _period ? _young : ticket.Period == _period - 1 ? _due : null;
            if (list is not null && (uint)ticket.Index < (uint)list.Count)
            {
                list[ticket.Index] = null;
            }
        }
    }

    /// <summary>Arms the sockets added during the previous period; stops the timer when none are left waiting.</summary>
    internal void Tick()
    {
        List<Socket?> due;
        lock (_lock)
        {
            due = _due;
            _due = _young;
            _young = _spare ?? [];
            _spare = null;
            _period++;
            if (due.Count == 0 && _due.Count == 0)
            {
                _timer?.Dispose();
                _timer = null;
                _spare = due;
                return;
            }
        }

        foreach (Socket? socket in due)
        {
            if (socket is not null)
            {
                Arm(socket);
            }
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
