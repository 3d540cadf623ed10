using Egress.Diagnostics;

namespace Egress.Tests.Diagnostics;

[TestFixture]
public sealed class DroppedLogLinesTests
{
    [TestCase("2026-12-01T13:00:41.678Z warn: Egress.Log[3] 3107 log line(s) dropped here: stdout was read more slowly than lines came", 3107)]
    [TestCase("""{"EventId":3,"LogLevel":"Warning","Category":"Egress.Log","Message":"3 log line(s) dropped here: stdout was read","State":{"Count":3,"{OriginalFormat}":"{Count} log line(s) dropped here: stdout"}}""", 3)]
    [TestCase("<4>Egress.Log[3] 1 log line(s) dropped here: stdout", 1)]
    [TestCase("{Count} log line(s) dropped here then 7 log line(s) dropped here", 7)]
    [TestCase("warn: Egress.Proxy[105] connection to 203.0.113.7:443 allowed", 0)]
    [TestCase("log line(s) dropped here", 0)]
    [TestCase("x log line(s) dropped here", 0)]
    [TestCase("12log line(s) dropped here", 0)]
    [TestCase("1234567890123456789 log line(s) dropped here", 0)]
    [TestCase("123456789012345678 log line(s) dropped here", 123456789012345678)]
    [TestCase("", 0)]
    public void TheCountIsTheDigitsRightBeforeTheText(string line, long count) =>
        Assert.That(DroppedLogLines.Count(line), Is.EqualTo(count));
}
