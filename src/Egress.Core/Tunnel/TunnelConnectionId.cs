namespace Egress.Tunnel;

/// <summary>
/// The 64-bit id an enclave gives each version 2 TCP stream (random, never 0; 0 means none, as in version 1). Both
/// hosts log it on their connection lines, so the two halves of one connection can be joined.
/// </summary>
/// <remarks>
/// A correlation id, not a secret: it comes from <see cref="Random.Shared"/> (seeded from the system's random source),
/// not from the cryptographic generator, whose OpenSSL call (with its getpid(2) fork check) cost every connection a
/// system call and about 1% of egress-enclave's CPU in the connection-rate benchmark.
/// </remarks>
internal static class TunnelConnectionId
{
    /// <summary>A new random id, never 0.</summary>
    public static ulong New()
    {
        ulong id;
        do
        {
            id = (ulong)Random.Shared.NextInt64(long.MinValue, long.MaxValue);
        }
        while (id == 0);

        return id;
    }
}
