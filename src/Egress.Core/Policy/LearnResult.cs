namespace Egress.Policy;

/// <summary>The answer of <see cref="EgressPolicy.Learn"/>: whether the address was learned, and why not.</summary>
public readonly struct LearnResult
{
    internal LearnResult(LearnOutcome outcome, string? rangeName = null)
    {
        Outcome = outcome;
        RangeName = rangeName;
    }

    /// <summary>What happened.</summary>
    public LearnOutcome Outcome { get; }

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
