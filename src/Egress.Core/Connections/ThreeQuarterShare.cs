namespace Egress.Connections;

/// <summary>
/// The most of a shared limit one party takes while others share it: three quarters, leaving a quarter (at least one)
/// to the others; with a limit of one, that one. One rule for the proxy's setup places per destination
/// (<see cref="ConnectionSetupLimit.DestinationShare"/>) and the parent's streams per enclave (<c>EnclaveStreamShare</c>).
/// </summary>
internal static class ThreeQuarterShare
{
    /// <summary>Three quarters of <paramref name="limit"/>: 48 of 64, 1,298 of 1,730, at least 1.</summary>
    public static int Of(int limit) => Math.Max(1, limit - Math.Max(1, limit / 4));
}
