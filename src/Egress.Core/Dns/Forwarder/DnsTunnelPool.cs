using Egress.Diagnostics;
using Egress.Dns.Wire;
using Microsoft.Extensions.Logging;

namespace Egress.Dns.Forwarder;

/// <summary>
/// A few long-lived tunnel DNS streams that all queries share (round robin; each opens on first use), and the
/// sweeper that times queries out and closes streams idle for <see cref="DnsStreamLimits.EnclaveIdleTimeout"/>. No connection per query: a query costs one frame each way.
/// </summary>
internal sealed class DnsTunnelPool : IDisposable
{
    private readonly DnsTunnelStream[] _streams;
    private readonly TimeProvider _time;
    private readonly long _timeoutTicks;
    private readonly long _idleTicks;
    private readonly ITimer _sweeper;
    private uint _next;

    public DnsTunnelPool(DnsForwarderOptions options, ILogger logger, CancellationToken stopping)
    {
        _time = options.TimeProvider;
        _timeoutTicks = (long)(options.QueryTimeout.TotalSeconds * _time.TimestampFrequency);
        _idleTicks = (long)(DnsStreamLimits.EnclaveIdleTimeout.TotalSeconds * _time.TimestampFrequency);
        _streams = new DnsTunnelStream[options.StreamCount];
        var unavailableLines = new LogRateLimit(_time, LogRateLimit.DefaultInterval, logger, 312, LogRateLimit.FailureLinesPerInterval); // every stream's
        for (int i = 0; i < _streams.Length; i++)
        {
            _streams[i] = new DnsTunnelStream(i, options, logger, unavailableLines, stopping);
        }

        TimeSpan period = TimeSpan.FromTicks(Math.Clamp(options.QueryTimeout.Ticks / 10, TimeSpan.TicksPerMillisecond * 10, TimeSpan.TicksPerMillisecond * 250));
        _sweeper = _time.CreateTimer(static state => ((DnsTunnelPool)state!).Sweep(), this, period, period);
    }

    /// <summary>
    /// Sends <paramref name="query"/> to the parent and waits for the answer. The query's ID is rewritten for the
    /// wire and restored before this returns; the answer (with the client's ID) is written to
    /// <paramref name="response"/>.
    /// </summary>
    /// <returns>The outcome and, when answered, the answer's length.</returns>
    public async ValueTask<(DnsExchangeStatus Status, int Length)> ExchangeAsync(Memory<byte> query, DnsAnswerBuffer response)
    {
        ushort clientId = DnsMessage.ReadId(query.Span);
        DnsPendingQuery pending = DnsPendingQuery.Rent(response, clientId, _time.GetTimestamp() + _timeoutTicks);
        try
        {
            if (!await Pick().SendAsync(query, pending).ConfigureAwait(false))
            {
                return (DnsExchangeStatus.StreamFailed, 0);
            }

            DnsExchangeStatus status = await pending.WaitAsync().ConfigureAwait(false);
            return (status, status == DnsExchangeStatus.Answered ? pending.ResponseLength : 0);
        }
        finally
        {
            DnsMessage.WriteId(query.Span, clientId);
            pending.Return();
        }
    }

    /// <summary>Closes every stream; their pending queries complete as stopped.</summary>
    public void Close()
    {
        _sweeper.Dispose();
        foreach (DnsTunnelStream stream in _streams)
        {
            stream.Close(DnsExchangeStatus.Stopped);
        }
    }

    public void Dispose() => Close();

    private DnsTunnelStream Pick() => _streams[(int)(Interlocked.Increment(ref _next) % (uint)_streams.Length)];

    private void Sweep()
    {
        long now = _time.GetTimestamp();
        foreach (DnsTunnelStream stream in _streams)
        {
            stream.Sweep(now, _idleTicks);
        }
    }
}
