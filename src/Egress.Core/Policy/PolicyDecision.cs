namespace Egress.Policy;

/// <summary>An allow or deny answer with its reason; <see cref="ToString"/> gives one line for logs.</summary>
public readonly struct PolicyDecision
{
    internal PolicyDecision(bool isAllowed, DecisionReason reason, string? subject = null, TimeSpan? time = null, int connections = 0)
    {
        Connections = connections;
        IsAllowed = isAllowed;
        Reason = reason;
        Subject = subject;
        Time = time;
    }

    /// <summary>Whether the connection or query may proceed.</summary>
    public bool IsAllowed { get; }

    /// <summary>Why.</summary>
    public DecisionReason Reason { get; }

    /// <summary>The matching entry, the name the address was learned from, the internal range, or the parent's
    /// interface that holds the address; else null.</summary>
    public string? Subject { get; }

    /// <summary>
    /// For <see cref="DecisionReason.Learned"/> the time until the TTL expires; for
    /// <see cref="DecisionReason.LearnedInGrace"/> the grace left; for <see cref="DecisionReason.LearnedExpired"/>
    /// the time since grace ended; otherwise null.
    /// </summary>
    public TimeSpan? Time { get; }

    /// <summary>For <see cref="DecisionReason.LearnedInUse"/> the connections open through the address; else 0.</summary>
    internal int Connections { get; }

    /// <summary>One human line, e.g. <c>denied: internal range link-local 169.254.0.0/16 (instance metadata)</c>.</summary>
    /// <returns>The line.</returns>
    public override string ToString() => Reason switch
    {
        DecisionReason.EgressDisabled => "denied: egress disabled",
        DecisionReason.StaticEntry => $"allowed: static entry \"{Subject}\"",
        DecisionReason.InternalRange => $"denied: internal range {Subject}",
        DecisionReason.AllowAll => "allowed: allow-all entry \"*\"",
        DecisionReason.NameEntry => $"allowed: name matches \"{Subject}\"",
        DecisionReason.Learned => $"allowed: learned from {Subject}, expires in {DurationText.Format(Time.GetValueOrDefault(), roundUp: true)}",
        DecisionReason.LearnedInGrace => $"allowed: learned from {Subject}, TTL expired, in grace for {DurationText.Format(Time.GetValueOrDefault(), roundUp: true)}",
        DecisionReason.LearnedInUse => $"allowed: learned from {Subject}, TTL expired, in use by {Connections} connection{(Connections == 1 ? string.Empty : "s")}",
        DecisionReason.LearnedExpired => $"denied: learned from {Subject}, expired {DurationText.Format(Time.GetValueOrDefault(), roundUp: false)} ago",
        DecisionReason.NeverLearned => "denied: never learned from an allowed name",
        DecisionReason.PortNotAllowed => $"denied: port not allowed by \"{Subject}\"",
        DecisionReason.ParentAddress => $"denied: an address of the parent itself (interface {Subject}); an entry naming this one address allows it",
        _ => "denied: name not in allowlist",
    };
}
