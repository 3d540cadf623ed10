namespace Egress.Policy;

/// <summary>
/// One open connection's claim on a learned address through one of its names (<see cref="AllowlistCache.Hold"/>): while
/// held the address, and that name's entry, stay allowed however old the answer is. <see cref="Dispose"/> releases it once; further calls do nothing, so every path
/// that ends the connection may release.
/// </summary>
internal sealed class AddressHold : IDisposable
{
    private AllowlistCache? _cache;
    private readonly UInt128 _key;
    private readonly string _name;

    internal AddressHold(AllowlistCache cache, UInt128 key, string name)
    {
        _cache = cache;
        _key = key;
        _name = name;
    }

    /// <summary>The name whose entry allowed the connection: it counts for the address while the hold lasts.</summary>
    internal string Name => _name;

    /// <summary>Releases the hold (the first call only).</summary>
    public void Dispose() => Interlocked.Exchange(ref _cache, null)?.Release(_key, _name);
}
