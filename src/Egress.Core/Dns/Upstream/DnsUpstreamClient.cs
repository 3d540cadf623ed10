using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Egress.Dns.Wire;
using Egress.Gateway;
using Egress.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Pipelines.Sockets.Unofficial;

namespace Egress.Dns.Upstream;

/// <summary>
/// Sends a query to the upstream resolvers and returns their answer verbatim: UDP first (the query as the enclave
/// sent it, EDNS included), TCP when the UDP answer is truncated; on a timeout or error, or an answer with RCODE
/// SERVFAIL, NOTIMP or REFUSED, the next upstream is tried (the last such answer is returned when no later upstream
/// answers), each attempt getting an equal share of what is left of the overall timeout. Toward the upstream the query
/// carries a random ID, over a small rotating pool of connected UDP sockets with random source ports per upstream
/// (<see cref="DnsUpstreamSocketPool"/>), and a UDP answer counts only when its ID and question match (anything else
/// is ignored as spoofed or stray). Timeouts are enforced by one sweeper timer, not a timer per query. A query
/// larger than a UDP datagram can carry (over <see cref="DnsForwarding.MaxUdpMessage"/> bytes, or refused by the
/// kernel with EMSGSIZE) goes over TCP instead (RFC 7766: TCP carries up to 65,535 bytes); it never touches, let
/// alone closes, a shared UDP socket. An upstream that leaves <see cref="QuietAfterMisses"/> UDP queries in a row
/// unanswered for their whole share, where another upstream is listed, is asked after the others for <see cref="QuietPeriod"/> (a black-holed first resolver
/// cost every query its share of the timeout, 1 s of 2 s with two upstreams, and no line said so); the change, and its
/// first answer after it, are logged.
/// </summary>
internal sealed class DnsUpstreamClient : IDisposable
{
    private readonly IReadOnlyList<IPEndPoint> _upstreams;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _time;
    private readonly DnsUpstreamSocketPool[] _pools;
    private readonly ITimer _sweeper;
    private readonly ILogger _logger;

    /// <summary>Per upstream (as <see cref="_pools"/>): the timestamp until which it is asked after the others; 0 when it
    /// answered last (or never went quiet).</summary>
    private readonly long[] _quietUntil;

    /// <summary>Per upstream: UDP queries left unanswered in a row since its last answer.</summary>
    private readonly int[] _misses;

    /// <param name="upstreams">The resolvers, in order of preference.</param>
    /// <param name="timeout">How long a query may take over all upstreams.</param>
    /// <param name="time">The clock of the timeouts and of <see cref="QuietPeriod"/>.</param>
    /// <param name="logger">Where an upstream going quiet, and answering again, is logged; null for nowhere.</param>
    public DnsUpstreamClient(IReadOnlyList<IPEndPoint> upstreams, TimeSpan timeout, TimeProvider time, ILogger? logger = null)
    {
        _upstreams = upstreams;
        _timeout = timeout;
        _time = time;
        _logger = logger ?? NullLogger.Instance;
        _quietUntil = new long[upstreams.Count];
        _misses = new int[upstreams.Count];
        _pools = [.. upstreams.Select(u => new DnsUpstreamSocketPool(u, time))];
        TimeSpan period = TimeSpan.FromTicks(Math.Clamp(timeout.Ticks / 20, TimeSpan.TicksPerMillisecond * 10, TimeSpan.TicksPerMillisecond * 100));
        _sweeper = time.CreateTimer(static state => ((DnsUpstreamClient)state!).Sweep(), this, period, period);
    }

    /// <summary>How long an upstream that let a query go unanswered is asked after the others (unless it answers one
    /// first, asked when the others failed).</summary>
    public static TimeSpan QuietPeriod { get; } = TimeSpan.FromSeconds(30);

    /// <summary>How many UDP queries in a row an upstream must leave unanswered (for their whole share, with no answer
    /// between them) before it is asked after the others: one lost datagram, or one name slow to resolve, does not move
    /// a preferred upstream (a resolver that knows private zones, listed first) behind the others.</summary>
    public const int QuietAfterMisses = 3;

    /// <summary>Gets the resolvers, in order of preference.</summary>
    public IReadOnlyList<IPEndPoint> Upstreams => _upstreams;

    /// <summary>
    /// Why a query failed with <paramref name="result"/> (<see cref="DnsUpstreamQuery.Failed"/>,
    /// <see cref="DnsUpstreamQuery.Mismatched"/>, <see cref="DnsUpstreamQuery.SocketFailed"/>), for its SERVFAIL's log
    /// line: the upstreams asked and the timeout, or each upstream's latest socket error (per upstream, not per query:
    /// a query fails with the socket error its upstream's socket failed with, the one recorded last for it), e.g.
    /// <c>the upstream refused or was unreachable (socket error; latest per upstream: 198.18.0.10:53 over UDP: ConnectionRefused)</c>.
    /// </summary>
    public string DescribeFailure(int result)
    {
        if (result == DnsUpstreamQuery.SocketFailed)
        {
            string[] failures = [.. _pools.Select(pool => pool.LastSocketFailure).OfType<string>()];
            return "the upstream refused or was unreachable (socket error" + (failures.Length == 0 ? ")" : "; latest per upstream: " + string.Join("; ", failures) + ")");
        }

        string none = string.Create(
            CultureInfo.InvariantCulture,
            $"none of {_pools.Length} upstream{(_pools.Length == 1 ? string.Empty : "s")} ({string.Join(", ", _upstreams)}) answered within {_timeout.TotalMilliseconds:0} ms");
        return result == DnsUpstreamQuery.Mismatched
            ? none + "; a message with the query's ID that did not answer its question was ignored (spoofed, or an upstream that rewrites the question)"
            : none;
    }

    /// <summary>Resolves <paramref name="query"/>; its ID is restored before this returns.</summary>
    /// <param name="query">The query.</param>
    /// <param name="response">Receives the answer (at least 65535 bytes), with the query's ID.</param>
    /// <param name="aborted">Ends the attempt at once.</param>
    /// <returns>The answer's length; <see cref="DnsUpstreamQuery.Failed"/> when no upstream answered in time;
    /// <see cref="DnsUpstreamQuery.Mismatched"/> when none did but one sent a message with the query's ID that did not
    /// answer its question (ignored); <see cref="DnsUpstreamQuery.SocketFailed"/> when the last upstream tried failed
    /// with a socket error (refused, unreachable) instead.</returns>
    public async ValueTask<int> ResolveAsync(Memory<byte> query, Memory<byte> response, CancellationToken aborted)
    {
        ushort originalId = DnsMessage.ReadId(query.Span);
        KeptAnswer? kept = null;
        try
        {
            long start = _time.GetTimestamp();
            int failure = DnsUpstreamQuery.Failed;
            bool mismatched = false;
            bool tcpOnly = IsTooLargeForUdp(query.Length);
            ulong quiet = QuietAt(start); // the order is the query's own: an upstream going quiet during it is not asked twice
            for (int i = 0; i < _pools.Length; i++)
            {
                TimeSpan left = _timeout - _time.GetElapsedTime(start);
                if (left <= TimeSpan.Zero)
                {
                    break;
                }

                int upstream = UpstreamAt(i, quiet);
                TimeSpan share = left / (_pools.Length - i);
                int length = tcpOnly ? DnsUpstreamQuery.TooLargeForUdp : await ExchangeUdpAsync(_pools[upstream], query, response, share, aborted).ConfigureAwait(false);
                length = NotMismatched(length, ref mismatched);
                if (length == DnsUpstreamQuery.Failed && _pools.Length > 1)
                {
                    Unanswered(upstream, share, query.Span);
                }
                else if (length > 0)
                {
                    Answered(upstream);
                }

                if (length == DnsUpstreamQuery.TooLargeForUdp || (length > 0 && DnsMessage.IsTruncated(response.Span[..length])))
                {
                    length = NotMismatched(await ExchangeTcpAsync(_pools[upstream], query, response, share, aborted).ConfigureAwait(false), ref mismatched);
                    if (length > 0)
                    {
                        Answered(upstream); // over TCP (a query too large for UDP): it answers all the same
                    }
                }

                if (length > 0 && i < _pools.Length - 1 && TriesTheNextUpstream(response.Span[..length]))
                {
                    // SERVFAIL, NOTIMP or REFUSED: this upstream cannot answer; the next one may (glibc's stub moves on
                    // for the same codes). Kept, so that the client gets it if no later upstream answers at all.
                    KeepAnswer(ref kept, response.Span[..length]);
                    continue;
                }

                if (length > 0)
                {
                    DnsMessage.WriteId(response.Span, originalId);
                    return length;
                }

                failure = length == DnsUpstreamQuery.SocketFailed ? length : DnsUpstreamQuery.Failed;
            }

            if (kept is not null)
            {
                // The last upstream timed out or failed after an earlier one answered SERVFAIL, NOTIMP or REFUSED: that
                // answer is the client's, verbatim, rather than a SERVFAIL made up here.
                int length = kept.Length;
                kept.Message.CopyTo(response.Span);
                DnsMessage.WriteId(response.Span, originalId);
                return length;
            }

            return failure == DnsUpstreamQuery.Failed && mismatched ? DnsUpstreamQuery.Mismatched : failure;
        }
        finally
        {
            DnsMessage.WriteId(query.Span, originalId);
            kept?.Return();
        }
    }

    /// <summary>Which upstreams are quiet at <paramref name="now"/>: bit i for upstream i (the first 64; any further ones
    /// count as not quiet). An upstream whose quiet period has ended is asked in its place again by one query only, the
    /// one that finds it ended first: that query re-arms the period for every other query, so a still black-holed
    /// upstream costs one query its share every <see cref="QuietPeriod"/>, not every query that starts within that
    /// share; it answers (<see cref="Answered"/>: in its place again) or stays quiet without another line.</summary>
    private ulong QuietAt(long now)
    {
        ulong quiet = 0;
        for (int i = 0; i < Math.Min(_quietUntil.Length, 64); i++)
        {
            long until = Volatile.Read(ref _quietUntil[i]);
            if (until > now)
            {
                quiet |= 1UL << i;
            }
            else if (until != 0)
            {
                long seen = Interlocked.CompareExchange(ref _quietUntil[i], now + QuietTicks, until);
                if (seen != until && seen > now)
                {
                    quiet |= 1UL << i; // another query is asking it first
                }
            }
        }

        return quiet;
    }

    private long QuietTicks => (long)(QuietPeriod.TotalSeconds * _time.TimestampFrequency);

    /// <summary>The upstream of attempt <paramref name="attempt"/>: those not in <paramref name="quiet"/> first, then the
    /// quiet ones, each group in the configured order.</summary>
    private int UpstreamAt(int attempt, ulong quiet)
    {
        if (quiet == 0)
        {
            return attempt;
        }

        int seen = 0;
        for (int pass = 0; pass < 2; pass++)
        {
            for (int i = 0; i < _pools.Length; i++)
            {
                bool isQuiet = i < 64 && (quiet & (1UL << i)) != 0;
                if (isQuiet == (pass == 1) && seen++ == attempt)
                {
                    return i;
                }
            }
        }

        return attempt; // not reached: the two passes cover every upstream once
    }

    /// <summary>Upstream <paramref name="upstream"/> let a UDP query go unanswered for its whole share: at the
    /// <see cref="QuietAfterMisses"/>th in a row, asked after the others for <see cref="QuietPeriod"/>, logged once per
    /// change (concurrent queries race for the one line).</summary>
    private void Unanswered(int upstream, TimeSpan share, ReadOnlySpan<byte> query)
    {
        int misses = Interlocked.Increment(ref _misses[upstream]);
        if (misses < QuietAfterMisses || upstream >= 64)
        {
            return; // not yet; and past the 64th, the order cannot set it aside (QuietAt)
        }

        long now = _time.GetTimestamp();
        long was = Volatile.Read(ref _quietUntil[upstream]);
        if (was > now)
        {
            return; // already quiet: asked only because the others failed too, or as the one query asking it first again
        }

        long until = now + QuietTicks;
        if (Interlocked.CompareExchange(ref _quietUntil[upstream], until, was) == was)
        {
            string name = DnsMessage.TryParseQuestion(query, out DnsQuestion question, out _) == DnsParseError.None ? question.LogName : "(unreadable)";
            GatewayLog.DnsUpstreamQuiet(_logger, _pools[upstream].Upstream, misses, name, share.TotalMilliseconds, QuietPeriod.TotalSeconds);
        }
    }

    /// <summary>Upstream <paramref name="upstream"/> answered: asked in its configured place again.</summary>
    private void Answered(int upstream)
    {
        if (Volatile.Read(ref _misses[upstream]) != 0)
        {
            Volatile.Write(ref _misses[upstream], 0);
        }

        long was = Volatile.Read(ref _quietUntil[upstream]);
        if (was != 0 && Interlocked.CompareExchange(ref _quietUntil[upstream], 0, was) == was)
        {
            GatewayLog.DnsUpstreamAnswersAgain(_logger, _pools[upstream].Upstream);
        }
    }

    /// <summary>Whether an upstream's answer is one a stub resolver would not settle for while another upstream is
    /// left: SERVFAIL (2), NOTIMP (4) or REFUSED (5), as glibc's <c>res_send</c> moves on to its next server.</summary>
    /// <param name="answer">An upstream's answer to the query (checked as such).</param>
    /// <returns>True for those codes.</returns>
    internal static bool TriesTheNextUpstream(ReadOnlySpan<byte> answer) =>
        DnsForwarding.ResponseCode(answer) is 2 or 4 or 5;

    private static void KeepAnswer(ref KeptAnswer? kept, ReadOnlySpan<byte> answer)
    {
        kept?.Return();
        kept = new KeptAnswer(answer);
    }

    /// <summary>Whether a query of <paramref name="length"/> bytes is larger than a UDP datagram can carry
    /// (65,507 bytes over IPv4; taken for IPv6 too), so it goes to the upstreams over TCP only.</summary>
    public static bool IsTooLargeForUdp(int length) => length > DnsForwarding.MaxUdpMessage;

    /// <summary>Closes the sockets; queries in flight fail.</summary>
    public void Dispose()
    {
        _sweeper.Dispose();
        foreach (DnsUpstreamSocketPool pool in _pools)
        {
            pool.Dispose();
        }
    }

    private async ValueTask<int> ExchangeUdpAsync(DnsUpstreamSocketPool pool, Memory<byte> query, Memory<byte> response, TimeSpan limit, CancellationToken aborted)
    {
        aborted.ThrowIfCancellationRequested();
        long deadline = _time.GetTimestamp() + (long)(limit.TotalSeconds * _time.TimestampFrequency);
        DnsUpstreamQuery pending = DnsUpstreamQuery.Rent(query, response, deadline);
        try
        {
            if (!pool.TrySend(pending, out SocketError error))
            {
                if (error != SocketError.MessageSize)
                {
                    pool.SocketFailed("UDP", error);
                }

                return error == SocketError.MessageSize ? DnsUpstreamQuery.TooLargeForUdp : DnsUpstreamQuery.SocketFailed;
            }

            int result;
            using (aborted.UnsafeRegister(static state => Abort((DnsUpstreamQuery)state!), pending))
            {
                result = await pending.WaitAsync().ConfigureAwait(false);
            }

            if (result == DnsUpstreamQuery.Aborted)
            {
                throw new OperationCanceledException(aborted);
            }

            if (result == DnsUpstreamQuery.SocketFailed)
            {
                pool.SocketFailed("UDP", pending.Socket?.FailedWith ?? SocketError.Success);
            }

            return result == DnsUpstreamQuery.Failed && pending.SawMismatch ? DnsUpstreamQuery.Mismatched : result;
        }
        finally
        {
            pending.Return();
        }
    }

    /// <summary>An exchange's result with <see cref="DnsUpstreamQuery.Mismatched"/> counted as unanswered
    /// (<see cref="DnsUpstreamQuery.Failed"/>), noted in <paramref name="mismatched"/> for the query's result.</summary>
    private static int NotMismatched(int length, ref bool mismatched)
    {
        if (length != DnsUpstreamQuery.Mismatched)
        {
            return length;
        }

        mismatched = true;
        return DnsUpstreamQuery.Failed;
    }

    private static void Abort(DnsUpstreamQuery query) => query.Socket?.TryCancel(query, DnsUpstreamQuery.Aborted);

    private void Sweep()
    {
        long now = _time.GetTimestamp();
        foreach (DnsUpstreamSocketPool pool in _pools)
        {
            pool.Sweep(now);
        }
    }

    private async ValueTask<int> ExchangeTcpAsync(DnsUpstreamSocketPool pool, ReadOnlyMemory<byte> query, Memory<byte> response, TimeSpan limit, CancellationToken aborted)
    {
        IPEndPoint upstream = pool.Upstream;
        var socket = new Socket(upstream.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        SocketConnection? connection = null;
        using var deadline = new CancellationTokenSource(limit, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, aborted);
        try
        {
            await socket.ConnectAsync(upstream, linked.Token).ConfigureAwait(false);
            connection = SocketPipe.Create(socket);
            DnsTcpFraming.WriteMessage(connection.Output, query.Span);
            await connection.Output.FlushAsync(linked.Token).ConfigureAwait(false);
            var frames = new DnsFrameReader(connection.Input, response.Length);
            if (await frames.ReadAsync(linked.Token).ConfigureAwait(false) != DnsStreamRead.Message)
            {
                return -1;
            }

            int length = (int)frames.Message.Length;
            frames.Message.CopyTo(response.Span);
            return DnsForwarding.IsAnswerTo(query.Span, response.Span[..length]) ? length : DnsUpstreamQuery.Mismatched;
        }
        catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
        {
            return -1;
        }
        catch (SocketException ex)
        {
            // A socket error (mostly the connect's own: refused or unreachable): said so, not as a timeout. A firewall that lets only
            // UDP 53 through makes every truncated answer end here.
            pool.SocketFailed("TCP", ex.SocketErrorCode);
            return DnsUpstreamQuery.SocketFailed;
        }
        catch (Exception ex) when (ex is IOException or ConnectionResetException or ConnectionAbortedException)
        {
            return -1;
        }
        finally
        {
            if (connection is null)
            {
                socket.Dispose();
            }
            else
            {
                connection.Dispose();
            }
        }
    }

    /// <summary>An upstream's SERVFAIL, NOTIMP or REFUSED kept while the next upstream is tried (a pooled copy:
    /// this happens only on the failure path).</summary>
    private sealed class KeptAnswer
    {
        private readonly byte[] _buffer;

        public KeptAnswer(ReadOnlySpan<byte> answer)
        {
            _buffer = ArrayPool<byte>.Shared.Rent(answer.Length);
            answer.CopyTo(_buffer);
            Length = answer.Length;
        }

        public int Length { get; }

        public ReadOnlySpan<byte> Message => _buffer.AsSpan(0, Length);

        public void Return() => ArrayPool<byte>.Shared.Return(_buffer);
    }
}
