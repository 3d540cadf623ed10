using System.Globalization;

namespace Egress.Gateway;

/// <summary>
/// Which of several values (the parent's stream handler of each <c>[[host.enclaves]]</c> entry) serves a tunnel stream,
/// by the CID of the VSOCK peer that opened it: the entry that names the CID, else the <c>cid = "any"</c> entry, else
/// none, and the stream is refused with the reason. A stream without a CID (a <c>unix:</c> or <c>tcp://</c> tunnel)
/// is served by the "any" entry. Without entries at all, one value serves every stream (<see cref="Single"/>).
/// </summary>
/// <typeparam name="T">What an entry maps to.</typeparam>
internal sealed class EnclaveMap<T>
    where T : class
{
    private readonly Dictionary<uint, T> _byCid;
    private readonly T? _any;
    private readonly string _mapped;

    /// <summary>Creates the map of the entries (<paramref name="entries"/>: a CID, or null for "any"; at most one each).</summary>
    /// <exception cref="ArgumentException">A CID, or "any", is given twice.</exception>
    public EnclaveMap(IEnumerable<(uint? Cid, T Value)> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        _byCid = [];
        foreach (var (cid, value) in entries)
        {
            if (cid is { } number)
            {
                if (!_byCid.TryAdd(number, value))
                {
                    throw new ArgumentException($"CID {number} is mapped twice", nameof(entries));
                }
            }
            else if (_any is not null)
            {
                throw new ArgumentException("\"any\" is mapped twice", nameof(entries));
            }
            else
            {
                _any = value;
            }
        }

        IsMapped = true;
        _mapped = _byCid.Count == 0 ? "none" : string.Join(", ", _byCid.Keys.Order().Select(cid => cid.ToString(CultureInfo.InvariantCulture)));
    }

    private EnclaveMap(T any)
    {
        _byCid = [];
        _any = any;
        _mapped = string.Empty;
    }

    /// <summary>Gets whether the map came from entries (false: <see cref="Single"/>).</summary>
    public bool IsMapped { get; }

    /// <summary>The map without entries: <paramref name="value"/> serves every stream.</summary>
    public static EnclaveMap<T> Single(T value) => new(value);

    /// <summary>Gets every value mapped, each once (the any-CID entry's too).</summary>
    public IEnumerable<T> Values => (_any is { } any ? _byCid.Values.Append(any) : _byCid.Values).Distinct();

    /// <summary>Finds the value for a stream from <paramref name="peerCid"/> (null: the transport has no CID).</summary>
    /// <param name="peerCid">The VSOCK peer's CID, or null.</param>
    /// <param name="value">The value; null when refused.</param>
    /// <param name="refusal">Why the stream is refused, e.g. <c>enclave CID 17 is not in [[host.enclaves]] (mapped: 16, 18; no cid = "any")</c>; null when served.</param>
    /// <returns>Whether the stream is served.</returns>
    public bool TryResolve(uint? peerCid, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out T? value, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? refusal)
    {
        refusal = null;
        if (peerCid is { } cid && _byCid.TryGetValue(cid, out value))
        {
            return true;
        }

        value = _any;
        if (value is not null)
        {
            return true;
        }

        refusal = peerCid is { } unknown
            ? string.Create(CultureInfo.InvariantCulture, $"enclave CID {unknown} is not in [[host.enclaves]] (mapped: {_mapped}; no cid = \"any\")")
            : $"this tunnel endpoint gives no peer CID and [[host.enclaves]] has no cid = \"any\" entry (mapped: {_mapped})";
        return false;
    }
}
