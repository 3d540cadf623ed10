namespace Egress.Policy;

/// <summary>
/// One open connection's claim on a learned address (<see cref="AllowlistCache.Hold"/>): while held the address stays
/// allowed however old its answer is. <see cref="Dispose"/> releases it once; further calls do nothing, so every path
/// that ends the connection may release.
/// </summary>
internal sealed class AddressHold : IDisposable
{
    private AllowlistCache? _cache;
    private readonly UInt128 _key;

    internal AddressHold(AllowlistCache cache, UInt128 key)
    {
        _cache = cache;
        _key = key;
    }

    /// <summary>Releases the hold (the first call only).</summary>
    public void Dispose() => Interlocked.Exchange(ref _cache, null)?.Release(_key);
}
