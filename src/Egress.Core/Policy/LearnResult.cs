namespace Egress.Policy;

/// <summary>The answer of <see cref="EgressPolicy.Learn"/>: whether the address was learned, and why not.</summary>
public readonly struct LearnResult
{
    private readonly LearnOutcome _outcome;

    /// <summary>False only for a result nobody made (<c>default</c>), which says "not learned": <see cref="LearnOutcome.Learned"/>
    /// is 0 in the released API, so the outcome alone would say "learned".</summary>
    private readonly bool _made;

    internal LearnResult(LearnOutcome outcome, string? rangeName = null)
    {
        _outcome = outcome;
        _made = true;
        RangeName = rangeName;
    }

    /// <summary>What happened; <see cref="LearnOutcome.EgressDisabled"/> for the default value, as a default
    /// <see cref="PolicyDecision"/> is a denial.</summary>
    public LearnOutcome Outcome => _made ? _outcome : LearnOutcome.EgressDisabled;

    /// <summary>Whether the address was learned.</summary>
    public bool IsLearned => Outcome == LearnOutcome.Learned;

    /// <summary>For <see cref="LearnOutcome.InternalRange"/> the range, e.g. <c>loopback 127.0.0.0/8</c>; else null.</summary>
    public string? RangeName { get; }

    /// <summary>One human line, e.g. <c>not learned: internal range loopback 127.0.0.0/8 (DNS rebinding protection)</c>.</summary>
    /// <returns>The line.</returns>
    public override string ToString() => Outcome switch
    {
        LearnOutcome.Learned => "learned",
        LearnOutcome.EgressDisabled => "not learned: egress disabled",
        LearnOutcome.NameNotAllowed => "not learned: name not in allowlist",
        _ => $"not learned: internal range {RangeName} (DNS rebinding protection)",
    };
}
