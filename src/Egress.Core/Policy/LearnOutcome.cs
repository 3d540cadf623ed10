namespace Egress.Policy;

/// <summary>What <see cref="EgressPolicy.Learn"/> did with an answer.</summary>
public enum LearnOutcome
{
    /// <summary>The address was learned.</summary>
    Learned,

    /// <summary>Not learned: egress is disabled.</summary>
    EgressDisabled,

    /// <summary>Not learned: the name is not allowed by any entry.</summary>
    NameNotAllowed,

    /// <summary>Not learned: the address is internal and no address or network entry covers it (DNS rebinding).</summary>
    InternalRange,
}
