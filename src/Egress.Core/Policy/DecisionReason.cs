namespace Egress.Policy;

/// <summary>Why a <see cref="PolicyDecision"/> allowed or denied.</summary>
public enum DecisionReason
{
    /// <summary>Denied: egress is disabled.</summary>
    EgressDisabled,

    /// <summary>Allowed: an address or network entry covers the address (even inside an internal range).</summary>
    StaticEntry,

    /// <summary>Denied: the address is in an internal range and no address or network entry covers it.</summary>
    InternalRange,

    /// <summary>Allowed: the list holds <c>*</c>.</summary>
    AllowAll,

    /// <summary>Allowed: a host name or wildcard entry matches the name.</summary>
    NameEntry,

    /// <summary>Allowed: the address was learned from an allowed name and its TTL has not expired.</summary>
    Learned,

    /// <summary>Allowed: the address was learned from an allowed name; its TTL expired but the grace period has not.</summary>
    LearnedInGrace,

    /// <summary>Denied: the address was learned from an allowed name, but TTL and grace have expired.</summary>
    LearnedExpired,

    /// <summary>Denied: the address was never learned from an allowed name, or was forgotten (after the expired
    /// retention, or evicted because the cache was full: then <see cref="PolicyDecision.Subject"/> names the name it was
    /// learned from).</summary>
    NeverLearned,

    /// <summary>Denied: no entry matches the name.</summary>
    NameNotAllowed,

    /// <summary>
    /// Allowed: the address was learned from an allowed name; its TTL expired, but connections allowed through it are
    /// still open (it stays allowed while they are, and for the grace period after the last one closes).
    /// </summary>
    LearnedInUse = 10,

    /// <summary>
    /// Denied on the parent: the address is one of the parent's own (an address of one of its network interfaces,
    /// e.g. its global IPv6 address), which would reach services on the parent itself, and no entry names that single
    /// address (a network entry that merely covers it does not).
    /// </summary>
    ParentAddress = 11,

    /// <summary>
    /// Denied: an entry allows the address (an address, network or <c>*</c> entry, or the entry of a name the address
    /// was learned from), but its <c>:PORTS</c> do not include the destination port.
    /// </summary>
    PortNotAllowed = 12,
}
