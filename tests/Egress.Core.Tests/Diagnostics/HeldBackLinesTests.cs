using Egress.Diagnostics;

namespace Egress.Tests.Diagnostics;

public sealed class HeldBackLinesTests
{
    [TestCase(0, "")]
    [TestCase(1, " (1 more refused since the last such line)")]
    [TestCase(12, " (12 more refused since the last such line)")]
    public void TheLineFragmentIsEmptyForNoneAndCountsTheRest(long count, string expected) =>
        Assert.That($"{new HeldBackLines(count, "refused"):line}", Is.EqualTo(expected));

    [Test]
    public void TheStructuredValueIsTheCount() =>
        Assert.That(new HeldBackLines(7, "rejected").ToString(), Is.EqualTo("7"));
}
