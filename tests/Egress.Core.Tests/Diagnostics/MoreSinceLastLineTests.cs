using Egress.Diagnostics;

namespace Egress.Tests.Diagnostics;

public sealed class MoreSinceLastLineTests
{
    [TestCase(0, "")]
    [TestCase(1, " (1 more refused since the last such line)")]
    [TestCase(12, " (12 more refused since the last such line)")]
    public void TheLineFragmentIsEmptyForNoneAndCountsTheRest(long count, string expected) =>
        Assert.That($"{new MoreSinceLastLine(count, "refused"):line}", Is.EqualTo(expected));

    [Test]
    public void TheStructuredValueIsTheCount() =>
        Assert.That(new MoreSinceLastLine(7, "rejected").ToString(), Is.EqualTo("7"));
}
