namespace Egress.Policy;

/// <summary>What <see cref="EgressPolicy.Restore"/> did with a name and address kept from an earlier run.</summary>
internal enum RestoreOutcome
{
    /// <summary>Restored: allowed as it was, with its expiry.</summary>
    Restored,

    /// <summary>Not restored: the policy refuses the name or the address, as it would a DNS answer's.</summary>
    Refused,

    /// <summary>Not restored: a new address while the cache already holds as many as its size bound allows.</summary>
    NoRoom,
}
