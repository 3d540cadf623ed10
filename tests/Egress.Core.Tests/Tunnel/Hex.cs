namespace Egress.Tests.Tunnel;

/// <summary>Reads test vectors written as spaced hex ("01 02 00 00").</summary>
internal static class Hex
{
    public static byte[] Bytes(string spaced) => Convert.FromHexString(spaced.Replace(" ", "", StringComparison.Ordinal));
}
