using Egress.Policy;

namespace Egress.Tests.Policy;

public sealed class PortSetTests
{
    [TestCase("443", "443", true)]
    [TestCase("443", "80,443", true)]
    [TestCase("80,443", "443", false)]
    [TestCase("8000-8100", "8000-8050,8051-8100", true)] // covered by adjacent ranges
    [TestCase("8000-8100", "8051-8100,8000-8060", true)] // by overlapping ranges in any order
    [TestCase("8000-8100", "8000-8050,8052-8100", false)] // 8051 is not
    [TestCase("1-65535", "1-65535", true)]
    [TestCase("65535", "1-65535", true)]
    [TestCase("1", "2-65535", false)]
    [TestCase(null, "1-65535", true)] // every port, written out
    [TestCase(null, "1-100,101-65535", true)]
    [TestCase(null, "1-65534", false)]
    [TestCase(null, null, true)]
    [TestCase("22", null, true)]
    public void IsWithinSaysWhetherEveryPortOfOneIsInTheOther(string? inner, string? outer, bool within) =>
        Assert.That(PortSet.IsWithin(Parse(inner), Parse(outer)), Is.EqualTo(within));

    [Test]
    public void IsWithinAgreesWithContainsOnRandomSets()
    {
        var random = new Random(20261204);
        for (int trial = 0; trial < 500; trial++)
        {
            PortSet inner = Random(random), outer = Random(random);
            bool expected = Enumerable.Range(1, 400).All(port => !inner.Contains(port) || outer.Contains(port));
            Assert.That(PortSet.IsWithin(inner, outer), Is.EqualTo(expected), $"{inner} within {outer}");
        }
    }

    // Up to four ports or ranges inside 1-400, so that a scan of every port is the reference.
    private static PortSet Random(Random random)
    {
        var parts = Enumerable.Range(0, random.Next(1, 5)).Select(_ =>
        {
            int first = random.Next(1, 400);
            return random.Next(2) == 0 ? $"{first}" : $"{first}-{random.Next(first, 401)}";
        });
        return Parse(string.Join(",", parts))!;
    }

    private static PortSet? Parse(string? text)
    {
        if (text is null)
        {
            return null;
        }

        Assert.That(PortSet.TryParse(text, out PortSet? ports), Is.Null, text);
        return ports;
    }
}
