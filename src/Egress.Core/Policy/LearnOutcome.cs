namespace Egress.Policy;

/// <summary>What <see cref="EgressPolicy.Learn"/> did with an answer. The default value (0) is
/// <see cref="EgressDisabled"/>, so a <see cref="LearnResult"/> nobody filled in (<c>default</c>) says "not learned",
/// as a default <see cref="PolicyDecision"/> says "denied".</summary>
public enum LearnOutcome
{
    /// <summary>Not learned: egress is disabled (also the default value).</summary>
    EgressDisabled = 0,

    /// <summary>The address was learned.</summary>
    Learned = 1,

    /// <summary>Not learned: the name is not allowed by any entry.</summary>
    NameNotAllowed = 2,

    /// <summary>Not learned: the address is internal and no address or network entry covers it (DNS rebinding).</summary>
    InternalRange = 3,
}
