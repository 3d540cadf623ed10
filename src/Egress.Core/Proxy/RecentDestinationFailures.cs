using System.Net;
using Egress.Tunnel;

namespace Egress.Proxy;

/// <summary>
/// Destinations (address and port) the parent could not reach in the last <see cref="Memory"/>: its connect timed out,
/// or the destination was unreachable (a blackholed address, an IPv6 address whose neighbour discovery fails). A
/// connection to one of them whose name has other live addresses tries those first and that one last, so that a dead
/// address of a name costs the parent's connect timeout once in <see cref="Memory"/>, not on every connection (a trial:
/// every request to a dual-stack name with a dead IPv6 address took 3–5 s through Egress where curl's Happy Eyeballs
/// took 0.2 s directly: the application's connect to the proxy succeeds at once, so it cannot fall back itself).
/// A refusal (RST) is not remembered: it costs no wait. Thread-safe; no lock while nothing is remembered.
/// </summary>
/// <param name="time">The clock of <see cref="Memory"/>.</param>
internal sealed class RecentDestinationFailures(TimeProvider time)
{
    /// <summary>How long a failure is remembered; after it the destination is dialled first again.</summary>
    public static readonly TimeSpan Memory = TimeSpan.FromSeconds(30);

    /// <summary>The most destinations remembered at once; a failure beyond them (after the expired are dropped) is not
    /// remembered.</summary>
    public const int Capacity = 1024;

    private readonly Dictionary<IPEndPoint, (long At, TunnelStatus Status)> _failed = [];
    private int _count;

    /// <summary>Whether a failure with <paramref name="status"/> is remembered: the parent waited for it.</summary>
    public static bool Remembers(TunnelStatus status) => status is TunnelStatus.TimedOut or TunnelStatus.Unreachable;

    /// <summary>Whether nothing is remembered (no lock taken).</summary>
    public bool IsEmpty => Volatile.Read(ref _count) == 0;

    /// <summary>Remembers that the parent answered <paramref name="status"/> for <paramref name="destination"/> now, if
    /// it is a status worth remembering (<see cref="Remembers"/>); another answer (a refusal: the destination is
    /// reachable) forgets it.</summary>
    public void Record(IPEndPoint destination, TunnelStatus status)
    {
        if (!Remembers(status))
        {
            Forget(destination);
            return;
        }

        long now = time.GetTimestamp();
        lock (_failed)
        {
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
                    return;
                }
            }

            _failed[destination] = (now, status);
            Volatile.Write(ref _count, _failed.Count);
        }
    }

    /// <summary>The failure remembered for <paramref name="destination"/> within <see cref="Memory"/>, if any.</summary>
    /// <param name="destination">The destination.</param>
    /// <param name="ago">How long ago it failed.</param>
    /// <param name="status">The parent's answer then.</param>
    public bool TryGet(IPEndPoint destination, out TimeSpan ago, out TunnelStatus status)
    {
        ago = default;
        status = default;
        if (IsEmpty)
        {
            return false;
        }

        lock (_failed)
        {
            if (!_failed.TryGetValue(destination, out var failure))
            {
                return false;
            }

            ago = time.GetElapsedTime(failure.At);
            if (ago >= Memory)
            {
                _failed.Remove(destination);
                Volatile.Write(ref _count, _failed.Count);
                return false;
            }

            status = failure.Status;
            return true;
        }
    }

    /// <summary>Forgets <paramref name="destination"/>'s failure: the parent has just connected it.</summary>
    public void Forget(IPEndPoint destination)
    {
        if (IsEmpty)
        {
            return;
        }

        lock (_failed)
        {
            if (_failed.Remove(destination))
            {
                Volatile.Write(ref _count, _failed.Count);
            }
        }
    }

    /// <summary>Whether <paramref name="destination"/> failed within <see cref="Memory"/>.</summary>
    public bool Contains(IPEndPoint destination) => TryGet(destination, out _, out _);
}
