using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Egress.Gateway;

/// <summary>
/// The tunnel streams each enclave (VSOCK peer CID) holds on a parent that serves several (<c>[[host.enclaves]]</c>
/// with two or more entries): no CID holds more than its share, three quarters of <c>host.max_streams</c>, so that code
/// in one enclave that opens streams up to the limit (connections it holds open, bare streams that send no request)
/// leaves the other enclaves a quarter for their connections and DNS streams. Streams without a CID (another
/// transport) are not counted: only the limit itself bounds them.
/// </summary>
internal sealed class EnclaveStreamShare
{
    private readonly Lock _gate = new();

    /// <summary>Per CID, the streams it holds; an entry is removed at 0.</summary>
    private readonly Dictionary<uint, int> _held = [];
    private readonly string _limitText;

    /// <summary>Creates the share of a stream limit.</summary>
    /// <param name="limit">The most streams served at once (<c>host.max_streams</c>, as derived).</param>
    /// <param name="limitText">The limit as refusals name it, e.g. <c>(host.max_streams = 1730, derived from RLIMIT_NOFILE = 4096)</c>.</param>
    public EnclaveStreamShare(int limit, string limitText)
    {
        Share = Connections.ThreeQuarterShare.Of(limit);
        _limitText = limitText;
    }

    /// <summary>Gets the most streams one CID holds at once: three quarters of the limit (a quarter is left to the
    /// others: 1,298 of 1,730), at least 1.</summary>
    public int Share { get; }

    /// <summary>Gets how many CIDs hold streams (tests: none is left behind).</summary>
    internal int Tracked
    {
        get
        {
            lock (_gate)
            {
                return _held.Count;
            }
        }
    }

    /// <summary>Counts a stream of <paramref name="cid"/> (give it back with <see cref="Return"/>), or says why not: the
    /// CID already holds its share. The reason says "limit reached", as every limit refusal does, so that the enclave
    /// reports it as the parent's limit.</summary>
    public bool TryTake(uint cid, [NotNullWhen(false)] out string? refusal)
    {
        lock (_gate)
        {
            ref int held = ref CollectionsMarshal.GetValueRefOrAddDefault(_held, cid, out _);
            if (held < Share)
            {
                held++;
                refusal = null;
                return true;
            }
        }

        refusal = string.Create(
            CultureInfo.InvariantCulture,
            $"stream limit reached for enclave CID {cid}: it holds {Share:N0} streams, three quarters of {_limitText}, its share while [[host.enclaves]] serves several enclaves");
        return false;
    }

    /// <summary>How many streams <paramref name="cid"/> holds now.</summary>
    public int Held(uint cid)
    {
        lock (_gate)
        {
            return _held.GetValueOrDefault(cid);
        }
    }

    /// <summary>Ends a stream counted by <see cref="TryTake"/>.</summary>
    public void Return(uint cid)
    {
        lock (_gate)
        {
            ref int held = ref CollectionsMarshal.GetValueRefOrNullRef(_held, cid);
            if (!Unsafe.IsNullRef(ref held) && --held <= 0)
            {
                _held.Remove(cid);
            }
        }
    }
}
