using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Egress.Tunnel;

/// <summary>
/// The 64-bit id an enclave gives each version 2 TCP stream (random, never 0; 0 means none, as in version 1). Both
/// hosts log it on their connection lines, so the two halves of one connection can be joined.
/// </summary>
internal static class TunnelConnectionId
{
    /// <summary>A new random id, never 0.</summary>
    public static ulong New()
    {
        Span<byte> bytes = stackalloc byte[sizeof(ulong)];
        ulong id;
        do
        {
            RandomNumberGenerator.Fill(bytes);
            id = BinaryPrimitives.ReadUInt64BigEndian(bytes);
        }
        while (id == 0);

        return id;
    }

    /// <summary>The suffix of a log line: <c>, conn 0123456789abcdef</c> (16 hex digits), or empty for 0 (no id).</summary>
    public static string LogSuffix(ulong id) => id == 0 ? string.Empty : $", conn {id:x16}";
}
