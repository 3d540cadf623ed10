using System.Net;
using System.Net.Sockets;

namespace Egress.Dns.Upstream;

/// <summary>
/// A few connected UDP sockets to one upstream that queries share round robin, instead of a socket per query.
/// Each socket is replaced after <see cref="MaxQueriesPerSocket"/> queries or <see cref="MaxSocketAge"/>,
/// whichever comes first (the old one finishes its pending queries, then closes), so a source port stays in use
/// only briefly. A socket that failed is replaced on next use.
/// </summary>
/// <remarks>
/// The trade-off against a fresh socket per query: an off-path attacker who wants a forged answer accepted must
/// still guess the source port (random, unknown to them) and the 16-bit random ID, and match the question; but a
/// port now serves many queries for up to <see cref="MaxSocketAge"/>, so an attacker able to learn it by a side
/// channel (e.g. ICMP rate-limit probing, SAD DNS) has that long, and each of the socket's pending IDs to aim at.
/// Rotation bounds that window; a fresh socket per query cost a socket, a connect, an epoll registration and a
/// close per query, the largest per-query cost of the parent.
/// </remarks>
internal sealed class DnsUpstreamSocketPool : IDisposable
{
    /// <summary>Sockets per upstream.</summary>
    public const int DefaultSocketCount = 4;

    /// <summary>Queries a socket carries before it is replaced.</summary>
    public const int MaxQueriesPerSocket = 4096;

    /// <summary>How long a socket takes new queries before it is replaced.</summary>
    public static readonly TimeSpan MaxSocketAge = TimeSpan.FromSeconds(10);

    private readonly IPEndPoint _upstream;
    private readonly TimeProvider _time;
    private readonly long _maxAgeTicks;
    private readonly DnsUpstreamSocket?[] _sockets;
    private readonly List<DnsUpstreamSocket> _retired = [];
    private readonly Lock _lock = new();
    private uint _next;
    private bool _disposed;

    public DnsUpstreamSocketPool(IPEndPoint upstream, TimeProvider time, int socketCount = DefaultSocketCount)
    {
        _upstream = upstream;
        _time = time;
        _maxAgeTicks = (long)(MaxSocketAge.TotalSeconds * time.TimestampFrequency);
        _sockets = new DnsUpstreamSocket?[socketCount];
    }

    /// <summary>Gets the upstream.</summary>
    public IPEndPoint Upstream => _upstream;

    /// <summary>Gets the latest socket error an exchange with this upstream ended with, for a SERVFAIL's log line, e.g.
    /// <c>198.18.0.10:53 over UDP: ConnectionRefused</c>; null before any.</summary>
    public string? LastSocketFailure => Volatile.Read(ref _lastSocketFailure);

    private string? _lastSocketFailure;

    /// <summary>Records a socket error of an exchange over <paramref name="transport"/> (<c>UDP</c>, <c>TCP</c>); none for
    /// <see cref="SocketError.Success"/>, <see cref="SocketError.OperationAborted"/> or <see cref="SocketError.Interrupted"/>
    /// (a socket closed by a dispose, not by the upstream).</summary>
    public void SocketFailed(string transport, SocketError error)
    {
        if (error is not (SocketError.Success or SocketError.OperationAborted or SocketError.Interrupted))
        {
            Volatile.Write(ref _lastSocketFailure, $"{_upstream} over {transport}: {error}");
        }
    }

    /// <summary>
    /// Sends <paramref name="query"/> on one of the sockets (see <see cref="DnsUpstreamSocket.TrySend(DnsUpstreamQuery)"/>); false
    /// when no socket could take it (none could be opened, sending failed, or every wire ID of every socket is in use).
    /// </summary>
    public bool TrySend(DnsUpstreamQuery query) => TrySend(query, out _);

    /// <summary>
    /// As <see cref="TrySend(DnsUpstreamQuery)"/>; when a send failed because of the message itself
    /// (<see cref="DnsUpstreamSocket.IsAboutTheMessage"/>, e.g. <see cref="SocketError.MessageSize"/>) no other socket
    /// is tried (each would fail the same way) and <paramref name="error"/> says why.
    /// </summary>
    public bool TrySend(DnsUpstreamQuery query, out SocketError error)
    {
        error = SocketError.Success;
        for (int i = 0; i < _sockets.Length; i++)
        {
            int slot = (int)(Interlocked.Increment(ref _next) % (uint)_sockets.Length);
            DnsUpstreamSocket? socket = Volatile.Read(ref _sockets[slot]);
            if (socket is null || socket.IsClosed || socket.Sent >= MaxQueriesPerSocket || _time.GetTimestamp() - socket.CreatedAt >= _maxAgeTicks)
            {
                socket = Replace(slot, socket);
                if (socket is null)
                {
                    return false;
                }
            }

            if (socket.TrySend(query, out error))
            {
                return true;
            }

            if (DnsUpstreamSocket.IsAboutTheMessage(error))
            {
                return false;
            }
        }

        return false;
    }

    /// <summary>Fails the queries past their deadline on every socket, retired ones included.</summary>
    public void Sweep(long now)
    {
        DnsUpstreamSocket[] sockets;
        lock (_lock)
        {
            _retired.RemoveAll(s => s.IsClosed);
            sockets = [.. _sockets.OfType<DnsUpstreamSocket>(), .. _retired];
        }

        foreach (DnsUpstreamSocket socket in sockets)
        {
            socket.Sweep(now);
        }
    }

    /// <summary>Closes every socket; pending queries fail.</summary>
    public void Dispose()
    {
        DnsUpstreamSocket[] sockets;
        lock (_lock)
        {
            _disposed = true;
            sockets = [.. _sockets.OfType<DnsUpstreamSocket>(), .. _retired];
            Array.Clear(_sockets);
            _retired.Clear();
        }

        foreach (DnsUpstreamSocket socket in sockets)
        {
            socket.Dispose();
        }
    }

    private DnsUpstreamSocket? Replace(int slot, DnsUpstreamSocket? stale)
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return null;
            }

            DnsUpstreamSocket? current = _sockets[slot];
            if (!ReferenceEquals(current, stale) && current is not null)
            {
                return current; // Another query replaced it first.
            }

            if (current is not null)
            {
                _retired.Add(current);
                current.Retire();
            }

            _sockets[slot] = null;
            try
            {
                var socket = new DnsUpstreamSocket(_upstream, _time.GetTimestamp());
                socket.Start();
                Volatile.Write(ref _sockets[slot], socket);
                return socket;
            }
            catch (SocketException)
            {
                return null;
            }
        }
    }
}
