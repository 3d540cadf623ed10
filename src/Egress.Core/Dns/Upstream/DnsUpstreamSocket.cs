using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Egress.Dns.Wire;

namespace Egress.Dns.Upstream;

/// <summary>
/// One UDP socket connected to one upstream (the kernel picks a random ephemeral source port and drops datagrams
/// from any other address or port), carrying many queries at once: each gets a random wire ID unused among the
/// socket's pending queries, and a datagram completes a query only when its ID and question (QR set, name ignoring
/// case, type, class) match that query; anything else is ignored as spoofed or stray. One receive loop delivers the
/// answers. A send error about the message itself (EMSGSIZE: larger than UDP can carry; ENOBUFS or EAGAIN: no room
/// for it just now) fails that send alone: the socket stays open and its other queries stay pending. Any other error
/// (e.g. ICMP port unreachable reported as ECONNREFUSED) means the socket or its upstream is broken: every pending
/// query fails at once with <see cref="DnsUpstreamQuery.SocketFailed"/> and the socket closes. A retired socket
/// takes no new queries and closes once its last pending query is done.
/// </summary>
internal sealed class DnsUpstreamSocket : IDisposable
{
    /// <summary>The receive buffer asked for (the kernel caps it at net.core.rmem_max): absorbs bursts of answers.</summary>
    public const int ReceiveBufferBytes = 1 << 20;

    private const int IdCount = ushort.MaxValue + 1;
    private const int RandomProbes = 16;

    private readonly Socket _socket;
    private readonly Lock _lock = new();
    private readonly Dictionary<ushort, DnsUpstreamQuery> _pending = [];
    private readonly List<DnsUpstreamQuery> _failed = [];
    private readonly byte[] _random = new byte[512];
    private readonly byte[] _buffer = new byte[DnsForwarding.MaxUdpMessage + 1];
    private int _randomOffset;
    private bool _retired;
    private bool _closed;

    /// <summary>Opens a socket connected to <paramref name="upstream"/>; <see cref="Start"/> starts receiving.</summary>
    /// <exception cref="SocketException">The socket cannot be created or connected.</exception>
    public DnsUpstreamSocket(IPEndPoint upstream, long createdAt)
    {
        _socket = new Socket(upstream.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            _socket.ReceiveBufferSize = ReceiveBufferBytes;
            _socket.Connect(upstream);
        }
        catch
        {
            _socket.Dispose();
            throw;
        }

        _randomOffset = _random.Length;
        CreatedAt = createdAt;
    }

    /// <summary>Gets the timestamp at which the socket was opened.</summary>
    public long CreatedAt { get; }

    /// <summary>Gets the number of queries sent on the socket so far.</summary>
    public int Sent { get; private set; }

    /// <summary>Gets the local (source) address and port.</summary>
    public IPEndPoint LocalEndPoint => (IPEndPoint)_socket.LocalEndPoint!;

    /// <summary>Gets the error that closed the socket (e.g. <see cref="SocketError.ConnectionRefused"/>: ICMP port
    /// unreachable, reported on a receive or a send), set before its pending queries are failed;
    /// <see cref="SocketError.Success"/> when none did (open, or closed by a dispose).</summary>
    public SocketError FailedWith { get; private set; }

    /// <summary>Gets whether the socket is closed (failed, disposed, or retired and drained).</summary>
    public bool IsClosed => Volatile.Read(ref _closed);

    /// <summary>Gets the number of queries waiting for an answer.</summary>
    public int PendingCount
    {
        get
        {
            lock (_lock)
            {
                return _pending.Count;
            }
        }
    }

    /// <summary>
    /// Starts the receive loop, on a <see cref="DnsThread"/> with blocking receives: an answer completes its query (and the
    /// code that forwards it to the enclave) on that thread, without waiting behind the thread pool's queue, which a
    /// flood of tunnel streams fills with thousands of continuations. The thread ends when the socket closes.
    /// </summary>
    public void Start() => DnsThread.Start("dns upstream", static state => ((DnsUpstreamSocket)state!).ReceiveLoop(), this);

    /// <summary>
    /// Registers <paramref name="query"/> under a random free wire ID (written into its bytes) and sends it. On false
    /// nothing is registered (the socket is closed, retired, all 65,536 IDs are in use, or the send failed) and the
    /// caller completes nothing; on true the receive loop, <see cref="Sweep"/>, <see cref="TryCancel"/> or a failure
    /// completes the query exactly once.
    /// </summary>
    public bool TrySend(DnsUpstreamQuery query) => TrySend(query, out _);

    /// <summary>
    /// As <see cref="TrySend(DnsUpstreamQuery)"/>; <paramref name="error"/> is the send's error when the send itself
    /// failed (<see cref="SocketError.MessageSize"/>: the query is too large for UDP, try TCP), otherwise
    /// <see cref="SocketError.Success"/>.
    /// </summary>
    public bool TrySend(DnsUpstreamQuery query, out SocketError error)
    {
        error = SocketError.Success;
        ushort id;
        lock (_lock)
        {
            if (_closed || _retired || _pending.Count >= IdCount)
            {
                return false;
            }

            id = FreeId();
            DnsMessage.WriteId(query.Query.Span, id);
            query.SentOn(this, id);
            _pending.Add(id, query);
            Sent++;
        }

        try
        {
            _socket.Send(query.Query.Span, SocketFlags.None, out error);
        }
        catch (ObjectDisposedException)
        {
            error = SocketError.OperationAborted;
        }

        if (error == SocketError.Success)
        {
            return true;
        }

        lock (_lock)
        {
            if (!_pending.Remove(id))
            {
                return true; // Already failed by whoever closed the socket: the caller awaits that.
            }
        }

        if (IsAboutTheMessage(error))
        {
            return false; // This query alone: the socket and its other pending queries are fine.
        }

        // E.g. a refusal (ICMP port unreachable) reported on this send: the upstream is not serving this socket.
        FailedWith = error;
        Close();
        return false;
    }

    /// <summary>
    /// Whether a send error concerns the message rather than the socket: EMSGSIZE (larger than a UDP datagram can
    /// carry), ENOBUFS or EAGAIN (no buffer for it just now). Such an error must not close a socket other queries
    /// share.
    /// </summary>
    public static bool IsAboutTheMessage(SocketError error) =>
        error is SocketError.MessageSize or SocketError.NoBufferSpaceAvailable or SocketError.WouldBlock;

    /// <summary>Stops taking queries; the socket closes once its pending queries are done.</summary>
    public void Retire()
    {
        bool drained;
        lock (_lock)
        {
            _retired = true;
            drained = _pending.Count == 0;
        }

        if (drained)
        {
            Close();
        }
    }

    /// <summary>Fails every pending query whose deadline is at or before <paramref name="now"/>.</summary>
    public void Sweep(long now)
    {
        bool drained;
        lock (_lock)
        {
            foreach (var (id, query) in _pending)
            {
                if (query.Deadline <= now)
                {
                    _failed.Add(query);
                    _pending.Remove(id);
                }
            }

            drained = _retired && _pending.Count == 0;
        }

        FailCollected(DnsUpstreamQuery.Failed);
        if (drained)
        {
            Close();
        }
    }

    /// <summary>Completes <paramref name="query"/> with <paramref name="result"/> if it is still pending here.</summary>
    public void TryCancel(DnsUpstreamQuery query, int result)
    {
        bool drained;
        lock (_lock)
        {
            if (!_pending.TryGetValue(query.Id, out DnsUpstreamQuery? pending) || !ReferenceEquals(pending, query))
            {
                return;
            }

            _pending.Remove(query.Id);
            drained = _retired && _pending.Count == 0;
        }

        query.Fail(result);
        if (drained)
        {
            Close();
        }
    }

    /// <summary>Closes the socket; pending queries fail.</summary>
    public void Dispose() => Close();

    private void Close()
    {
        lock (_lock)
        {
            if (_closed)
            {
                return;
            }

            Volatile.Write(ref _closed, true);
            _failed.AddRange(_pending.Values);
            _pending.Clear();
        }

        FailCollected(DnsUpstreamQuery.SocketFailed);
        try
        {
            // Wakes the receive thread blocked in the kernel (closing alone does not on Linux).
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
            // Nothing to wake.
        }

        _socket.Dispose();
    }

    private void FailCollected(int result)
    {
        // Only the thread that collected under the lock gets here with entries; the list is reused.
        DnsUpstreamQuery[] failed;
        lock (_lock)
        {
            if (_failed.Count == 0)
            {
                return;
            }

            failed = [.. _failed];
            _failed.Clear();
        }

        foreach (DnsUpstreamQuery query in failed)
        {
            query.Fail(result);
        }
    }

    private ushort FreeId()
    {
        for (int i = 0; i < RandomProbes; i++)
        {
            ushort candidate = NextRandom();
            if (!_pending.ContainsKey(candidate))
            {
                return candidate;
            }
        }

        // Nearly full: scan from a random start (the caller checked that a free ID exists).
        ushort id = NextRandom();
        while (_pending.ContainsKey(id))
        {
            id++;
        }

        return id;
    }

    private ushort NextRandom()
    {
        if (_randomOffset >= _random.Length)
        {
            RandomNumberGenerator.Fill(_random);
            _randomOffset = 0;
        }

        ushort value = (ushort)(_random[_randomOffset] << 8 | _random[_randomOffset + 1]);
        _randomOffset += 2;
        return value;
    }

    private void ReceiveLoop()
    {
        while (true)
        {
            int received;
            try
            {
                received = _socket.Receive(_buffer, SocketFlags.None);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // Closed, or an error such as ICMP port unreachable: the upstream is not serving this socket.
                if (ex is SocketException socketError && !IsClosed && FailedWith == SocketError.Success)
                {
                    // Before Close fails the pending queries, which read it; not once closed (a dispose interrupts the
                    // receive: a review saw Interrupted named as the upstream's error).
                    FailedWith = socketError.SocketErrorCode;
                }

                Close();
                return;
            }

            Deliver(_buffer.AsSpan(0, received));
        }
    }

    private void Deliver(ReadOnlySpan<byte> datagram)
    {
        if (datagram.Length < DnsHeader.Length)
        {
            return;
        }

        DnsUpstreamQuery? query;
        bool drained;
        lock (_lock)
        {
            if (!_pending.TryGetValue(DnsMessage.ReadId(datagram), out query))
            {
                return; // Spoofed, stray, or late (its query already timed out): ignored.
            }

            if (!DnsForwarding.IsAnswerTo(query.Query.Span, datagram))
            {
                query.Mismatch(); // spoofed, or an upstream that rewrites the question: ignored, and said when it times out
                return;
            }

            _pending.Remove(query.Id);
            drained = _retired && _pending.Count == 0;
        }

        if (drained)
        {
            Close(); // Nothing is pending any more; the datagram stays in the buffer.
        }

        query.Answer(datagram);
    }
}
