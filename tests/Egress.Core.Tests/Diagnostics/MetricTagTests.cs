using Egress.Diagnostics;
using Egress.Policy;
using Egress.Relay;
using Egress.Tunnel;

namespace Egress.Tests.Diagnostics;

/// <summary>Metric tag values have one casing: snake_case, from the enum member names.</summary>
public sealed class MetricTagTests
{
    [TestCase(DecisionReason.StaticEntry, "static_entry")]
    [TestCase(DecisionReason.LearnedInGrace, "learned_in_grace")]
    [TestCase(DecisionReason.AllowAll, "allow_all")]
    public void PolicyReasonIsSnakeCase(DecisionReason reason, string tag) => Assert.That(MetricTag.Of(reason), Is.EqualTo(tag));

    [TestCase(TunnelStatus.DeniedByPolicy, "denied_by_policy")]
    [TestCase(TunnelStatus.Ok, "ok")]
    public void TunnelStatusIsSnakeCase(TunnelStatus status, string tag) => Assert.That(MetricTag.Of(status), Is.EqualTo(tag));

    [TestCase(RelayShutdownCause.AReadError, "a_read_error")]
    [TestCase(RelayShutdownCause.BothCompleted, "both_completed")]
    public void RelayCauseIsSnakeCase(RelayShutdownCause cause, string tag) => Assert.That(MetricTag.Of(cause), Is.EqualTo(tag));

    [Test]
    public void ValueWithoutANameIsItsNumber() => Assert.That(MetricTag.Of((TunnelStatus)200), Is.EqualTo("200"));

    [Test]
    public void EveryTagOfTheTaggedEnumsIsLowerCaseLettersDigitsAndUnderscores()
    {
        IEnumerable<string> tags = Enum.GetValues<DecisionReason>().Select(v => MetricTag.Of(v))
            .Concat(Enum.GetValues<TunnelStatus>().Select(v => MetricTag.Of(v)))
            .Concat(Enum.GetValues<RelayShutdownCause>().Select(v => MetricTag.Of(v)));

        Assert.That(tags, Is.All.Match("^[a-z][a-z0-9_]*$"));
    }
}
