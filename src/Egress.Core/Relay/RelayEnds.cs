namespace Egress.Relay;

/// <summary>The part of a connection's closing log line that says how a version 2 tunnel stream's directions ended.</summary>
internal static class RelayEnds
{
    /// <summary><c> (END sent FIN, received RST)</c> for a framed relay; empty for a raw (version 1) relay.</summary>
    public static string LogText(RelayResult relay) => relay.Framed is { } ends ? $" (END {ends})" : string.Empty;
}
