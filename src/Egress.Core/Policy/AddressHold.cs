namespace Egress.Policy;

/// <summary>
/// One open connection's claim on a learned address through the names whose entries allowed it
/// (<see cref="AllowlistCache.Hold"/>): while held the address, and those names, stay allowed however old the answer is. <see cref="Dispose"/> releases it once; further calls do nothing, so every path
/// that ends the connection may release.
/// </summary>
internal sealed class AddressHold : IDisposable
{
    private AllowlistCache? _cache;
    private readonly UInt128 _key;
    private readonly string _name;
    private readonly string[]? _others;

    internal AddressHold(AllowlistCache cache, UInt128 key, string name, string[]? others)
    {
        _cache = cache;
        _key = key;
        _name = name;
        _others = others;
    }

    /// <summary>The name the connection's decision named: it counts for the address while the hold lasts.</summary>
    internal string Name => _name;

    /// <summary>Releases the hold (the first call only).</summary>
    public void Dispose() => Interlocked.Exchange(ref _cache, null)?.Release(_key, _name, _others);
}
