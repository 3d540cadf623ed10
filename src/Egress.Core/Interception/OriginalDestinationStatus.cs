namespace Egress.Interception;

/// <summary>What <see cref="OriginalDestination.Read"/> found out about an accepted connection.</summary>
public enum OriginalDestinationStatus
{
    /// <summary>The connection was redirected (DNAT or REDIRECT); the result carries where the client meant to go.</summary>
    Redirected,

    /// <summary>
    /// The connection reached the listener directly: no conntrack entry, or one without address translation. It
    /// must not be relayed (relaying it would connect the proxy to itself).
    /// </summary>
    NotRedirected,

    /// <summary>The original destination could not be read; the result's detail says why.</summary>
    Failed,
}
