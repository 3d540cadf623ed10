using System.Net;
using Egress.Tunnel;

namespace Egress.Proxy;

/// <summary>
/// Destinations (address and port) the parent could not reach lately: its connect timed out, or the destination was
/// unreachable (a blackholed address, an IPv6 address whose neighbour discovery fails), each with the other addresses of
/// its name known then. A connection to one of them tries those first and it last, so that a dead address of a name
/// costs the parent's connect timeout about once in <see cref="Memory"/>, not on every connection (a trial: every
/// request to a dual-stack name with a dead IPv6 address took 3–5 s through Egress where curl's Happy Eyeballs took
/// 0.2 s directly: the application's connect to the proxy succeeds at once, so it cannot fall back itself). Once a
/// failure is <see cref="Memory"/> old, one connection dials the destination first again (a probe) while the others go
/// on trying it last, until the probe connects (forgotten) or fails (remembered anew); a probe that never reports is
/// replaced after another <see cref="Memory"/> (a second trial: when the memory simply ran out, every connection of the
/// next 5 s paid the timeout: 68 of 506 requests, and 200 of a burst of 200). A refusal (RST) is not remembered: it
/// costs no wait, and proves the destination reachable. Thread-safe; no lock while nothing is remembered (everything is
/// forgotten once the newest failure is older than <see cref="Retention"/>).
/// </summary>
/// <param name="time">The clock of <see cref="Memory"/> and <see cref="Retention"/>.</param>
internal sealed class RecentDestinationFailures(TimeProvider time)
{
    /// <summary>How long after a failure the destination is tried last by every connection; after it, by all but one
    /// connection at a time, which dials it first (the probe).</summary>
    public static readonly TimeSpan Memory = TimeSpan.FromSeconds(30);

    /// <summary>How long a failure is kept without the destination failing again (or a probe settling it): after it, the
    /// destination is dialled first again by every connection.</summary>
    public static readonly TimeSpan Retention = TimeSpan.FromMinutes(5);

    /// <summary>The most destinations remembered at once; a failure beyond them (after those older than
    /// <see cref="Memory"/> are dropped) is not remembered.</summary>
    public const int Capacity = 1024;

    private readonly Dictionary<IPEndPoint, Failure> _failed = [];
    private int _count;
    private long _newest;

    /// <summary>A remembered failure: when, the parent's answer, the name the connection went by, that name's other
    /// addresses then, and when a connection last set out to dial it first (its probe; 0: none yet).</summary>
    internal readonly record struct Failure(long At, TunnelStatus Status, string Name, IPAddress[] Others, long ProbeAt = 0);

    /// <summary>Whether a failure with <paramref name="status"/> is remembered: the parent waited for it.</summary>
    public static bool Remembers(TunnelStatus status) => status is TunnelStatus.TimedOut or TunnelStatus.Unreachable;

    /// <summary>Whether nothing is remembered (no lock taken).</summary>
    public bool IsEmpty => Volatile.Read(ref _count) == 0;

    /// <summary>Remembers that the parent answered <paramref name="status"/> for <paramref name="destination"/> now,
    /// with <paramref name="others"/>, the other addresses of <paramref name="name"/>, if it is a status worth remembering
    /// (<see cref="Remembers"/>); another answer (a refusal: the destination is reachable) forgets it.</summary>
    public void Record(IPEndPoint destination, TunnelStatus status, string name, IEnumerable<IPAddress> others)
    {
        if (!Remembers(status))
        {
            Forget(destination);
            return;
        }

        IPAddress[] alternatives = [.. others.Where(address => !address.Equals(destination.Address)).Distinct()];
        lock (_failed)
        {
            long now = time.GetTimestamp();
            ForgetAllIfStale(now);
            if (_failed.Count >= Capacity && !_failed.ContainsKey(destination))
            {
                foreach (var (key, failure) in _failed)
                {
                    if (time.GetElapsedTime(failure.At, now) >= Memory)
                    {
                        _failed.Remove(key);
                    }
                }

                if (_failed.Count >= Capacity)
                {
                    Volatile.Write(ref _count, _failed.Count);
                    return;
                }
            }

            _failed[destination] = new Failure(now, status, name, alternatives);
            _newest = Math.Max(_newest, now);
            Volatile.Write(ref _count, _failed.Count);
        }
    }

    /// <summary>The failure remembered for <paramref name="destination"/>, when the caller is to try the destination
    /// last: within <see cref="Memory"/> of the failure, or while another connection's probe is out. False when nothing
    /// is remembered, and for the one connection that is to probe it (the failure is <see cref="Memory"/> old and no probe
    /// is out): that caller dials it first, as if nothing were remembered, and reports how it went (a connection or a
    /// refusal: <see cref="Forget"/>; another failure: <see cref="Record"/>).</summary>
    /// <param name="destination">The destination.</param>
    /// <param name="failure">Its failure.</param>
    /// <param name="ago">How long ago it failed.</param>
    public bool TryGet(IPEndPoint destination, out Failure failure, out TimeSpan ago) => TryGet(destination, out failure, out ago, out _);

    /// <summary>As <see cref="TryGet(IPEndPoint, out Failure, out TimeSpan)"/>; <paramref name="probe"/> says whether a
    /// false answer made the caller the probe (then <paramref name="failure"/> and <paramref name="ago"/> are the
    /// failure's, for its log line).</summary>
    /// <param name="destination">The destination.</param>
    /// <param name="failure">Its failure.</param>
    /// <param name="ago">How long ago it failed.</param>
    /// <param name="probe">Whether the caller is to probe it.</param>
    public bool TryGet(IPEndPoint destination, out Failure failure, out TimeSpan ago, out bool probe)
    {
        failure = default;
        ago = default;
        probe = false;
        if (IsEmpty)
        {
            return false;
        }

        lock (_failed)
        {
            long now = time.GetTimestamp();
            if (ForgetAllIfStale(now) || !_failed.TryGetValue(destination, out failure))
            {
                return false;
            }

            ago = time.GetElapsedTime(failure.At, now);
            if (ago >= Retention)
            {
                _failed.Remove(destination);
                Volatile.Write(ref _count, _failed.Count);
                failure = default;
                return false;
            }

            if (ago >= Memory && (failure.ProbeAt == 0 || time.GetElapsedTime(failure.ProbeAt, now) >= Memory))
            {
                _failed[destination] = failure with { ProbeAt = now }; // this connection probes; the others still try it last
                probe = true;
                return false;
            }

            return true;
        }
    }

    /// <summary>Forgets <paramref name="destination"/>'s failure: the parent has just connected it, or refused it.</summary>
    public void Forget(IPEndPoint destination)
    {
        if (IsEmpty)
        {
            return;
        }

        lock (_failed)
        {
            if (!ForgetAllIfStale(time.GetTimestamp()) && _failed.Remove(destination))
            {
                Volatile.Write(ref _count, _failed.Count);
            }
        }
    }

    /// <summary>Whether a failure of <paramref name="destination"/> is remembered (within <see cref="Retention"/>), to
    /// order it last among a failover's candidates; claims no probe.</summary>
    public bool Contains(IPEndPoint destination)
    {
        if (IsEmpty)
        {
            return false;
        }

        lock (_failed)
        {
            long now = time.GetTimestamp();
            return !ForgetAllIfStale(now) && _failed.TryGetValue(destination, out Failure failure)
                && time.GetElapsedTime(failure.At, now) < Retention;
        }
    }

    /// <summary>Forgets everything when even the newest failure is older than <see cref="Retention"/> (under the lock), so
    /// that <see cref="IsEmpty"/> holds again without a lookup of each destination.</summary>
    private bool ForgetAllIfStale(long now)
    {
        if (_failed.Count == 0 || time.GetElapsedTime(_newest, now) < Retention)
        {
            return _failed.Count == 0;
        }

        _failed.Clear();
        Volatile.Write(ref _count, 0);
        return true;
    }
}
