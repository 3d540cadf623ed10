namespace Egress.Policy;

/// <summary>An allow or deny answer with its reason; <see cref="ToString"/> gives one line for logs.</summary>
public readonly struct PolicyDecision
{
    internal PolicyDecision(bool isAllowed, DecisionReason reason, string? subject = null, TimeSpan? time = null, int connections = 0)
        : this(isAllowed, reason, subject, time, connections, ReportEffect.None)
    {
    }

    private PolicyDecision(bool isAllowed, DecisionReason reason, string? subject, TimeSpan? time, int connections, ReportEffect report)
    {
        _report = report;
        Connections = connections;
        IsAllowed = isAllowed;
        Reason = reason;
        Subject = subject;
        Time = time;
    }

    private readonly ReportEffect _report;

    /// <summary>What <see cref="EgressMode.Report"/> did to a decision.</summary>
    private enum ReportEffect : byte
    {
        /// <summary>Nothing: enforce mode, or an allowed decision.</summary>
        None,

        /// <summary>Allowed although <see cref="EgressMode.Enforce"/> would deny it.</summary>
        Relaxed,

        /// <summary>Denied in report mode too: report mode does not relax this reason.</summary>
        Kept,
    }

    /// <summary>
    /// Whether the decision is allowed only because the policy is in <see cref="EgressMode.Report"/>:
    /// <see cref="Reason"/> (and <see cref="Subject"/>, <see cref="Time"/>) then say why <see cref="EgressMode.Enforce"/>
    /// would deny it. False for every decision of an enforcing policy.
    /// </summary>
    public bool WouldDeny => _report == ReportEffect.Relaxed;

    /// <summary>Whether a denial was kept by <see cref="EgressMode.Report"/> (internal ranges, the parent's own
    /// addresses, disabled egress).</summary>
    internal bool KeptInReportMode => _report == ReportEffect.Kept;

    /// <summary>This denial allowed by report mode.</summary>
    internal PolicyDecision Relaxed() => new(true, Reason, Subject, Time, Connections, ReportEffect.Relaxed);

    /// <summary>This denial, marked as one report mode keeps.</summary>
    internal PolicyDecision Kept() => new(false, Reason, Subject, Time, Connections, ReportEffect.Kept);

    /// <summary>Why <see cref="EgressMode.Enforce"/> denies (or, with <see cref="WouldDeny"/>, would deny), without
    /// the leading <c>denied: </c>, e.g. <c>never learned from an allowed name</c>; for an allowed decision its line.</summary>
    internal string Denial => WithoutPrefix(Describe());

    /// <summary>This decision's line (<see cref="ToString"/>) without a leading <c>denied: </c>, for a line that already
    /// says it denied: <c>denied DNS evil.example A: name not in allowlist</c> (a trial read "A: denied: name ...").</summary>
    internal string WithoutDeniedPrefix => WithoutPrefix(ToString());

    private static string WithoutPrefix(string line) =>
        line.StartsWith(DeniedPrefix, StringComparison.Ordinal) ? line[DeniedPrefix.Length..] : line;

    private const string DeniedPrefix = "denied: ";

    /// <summary>Whether the connection or query may proceed.</summary>
    public bool IsAllowed { get; }

    /// <summary>Why.</summary>
    public DecisionReason Reason { get; }

    /// <summary>The matching entry, the name the address was learned from (also for a
    /// <see cref="DecisionReason.NeverLearned"/> address that was learned and then evicted because the cache was full),
    /// the internal range, or the parent's interface that holds the address; else null.</summary>
    public string? Subject { get; }

    /// <summary>The name an address was learned from when <see cref="Subject"/> is one (a learned address, allowed or
    /// not, or an unlisted name's: <see cref="DecisionReason.Learned"/>, <see cref="DecisionReason.LearnedInGrace"/>,
    /// <see cref="DecisionReason.LearnedInUse"/>, <see cref="DecisionReason.LearnedExpired"/>,
    /// <see cref="DecisionReason.NameNotAllowed"/>, an evicted <see cref="DecisionReason.NeverLearned"/>); null when it
    /// is an entry, a range or an interface, or none.</summary>
    internal string? LearnedName => Reason is DecisionReason.Learned or DecisionReason.LearnedInGrace or DecisionReason.LearnedInUse
        or DecisionReason.LearnedExpired or DecisionReason.NameNotAllowed or DecisionReason.NeverLearned
        ? Subject
        : null;

    /// <summary>
    /// For <see cref="DecisionReason.Learned"/> the time until the TTL expires; for
    /// <see cref="DecisionReason.LearnedInGrace"/> the grace left; for <see cref="DecisionReason.LearnedExpired"/>
    /// the time since grace ended; for <see cref="DecisionReason.NeverLearned"/> with a <see cref="Subject"/> the time
    /// since the address was evicted; otherwise null.
    /// </summary>
    public TimeSpan? Time { get; }

    /// <summary>For <see cref="DecisionReason.LearnedInUse"/> the connections open through the address; else 0.</summary>
    internal int Connections { get; }

    /// <summary>One human line, e.g. <c>denied: internal range link-local 169.254.0.0/16 (instance metadata)</c>; in
    /// report mode <c>allowed by report mode; enforce would deny: never learned from an allowed name</c> or
    /// <c>denied: internal range ...; report mode does not relax internal addresses</c>.</summary>
    /// <returns>The line.</returns>
    public override string ToString() => _report switch
    {
        ReportEffect.Relaxed => "allowed by report mode; enforce would deny: " + Denial,
        ReportEffect.Kept => Describe() + "; report mode does not relax internal addresses",
        _ => Describe(),
    };

    /// <summary>How a denial of one of the parent's own addresses (<see cref="DecisionReason.ParentAddress"/>) begins
    /// after <c>denied: </c>; the enclave, which cannot know the parent's addresses, recognises the parent's answer by it.</summary>
    internal const string ParentAddressText = "an address of the parent itself";

    private string Describe() => Reason switch
    {
        DecisionReason.EgressDisabled => "denied: egress disabled",
        DecisionReason.StaticEntry => $"allowed: static entry \"{Subject}\"",
        DecisionReason.InternalRange => $"denied: internal range {Subject}",
        DecisionReason.AllowAll => $"allowed: allow-all entry \"{Subject ?? "*"}\"",
        DecisionReason.NameEntry => $"allowed: name matches \"{Subject}\"",
        DecisionReason.Learned => $"allowed: learned from {Subject}, expires in {DurationText.Format(Time.GetValueOrDefault(), roundUp: true)}",
        DecisionReason.LearnedInGrace => $"allowed: learned from {Subject}, TTL expired, in grace for {DurationText.Format(Time.GetValueOrDefault(), roundUp: true)}",
        DecisionReason.LearnedInUse => $"allowed: learned from {Subject}, TTL expired, in use by {Connections} connection{(Connections == 1 ? string.Empty : "s")}",
        DecisionReason.LearnedExpired => $"denied: learned from {Subject}, expired {DurationText.Format(Time.GetValueOrDefault(), roundUp: false)} ago",
        DecisionReason.NeverLearned when Subject is not null =>
            $"denied: learned from {Subject}, evicted {DurationText.Format(Time.GetValueOrDefault(), roundUp: false)} ago: the learned-address cache was full (raise [dns] cache_max_entries)",
        DecisionReason.NeverLearned => "denied: never learned from an allowed name",
        DecisionReason.PortNotAllowed => $"denied: port not allowed by \"{Subject}\"",
        DecisionReason.ParentAddress => $"denied: {ParentAddressText} (interface {Subject}); an entry naming this one address allows it",
        _ when Subject is not null => $"denied: name {Subject} not in allowlist",
        _ => "denied: name not in allowlist",
    };
}
