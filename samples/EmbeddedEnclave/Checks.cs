using Egress.Policy;
using Egress.Tunnel;

namespace EmbeddedEnclave;

/// <summary>Prints each step with its result and counts the ones that differ from what was expected.</summary>
internal sealed class Checks
{
    public int Passed { get; private set; }

    public int Failures { get; private set; }

    public void Decision(string what, PolicyDecision decision, DecisionReason expected) =>
        Record(decision.Reason == expected, what, decision.ToString(), expected.ToString());

    public void Learn(string what, LearnResult result, LearnOutcome expected) =>
        Record(result.Outcome == expected, what, result.ToString(), expected.ToString());

    public void Connect(string what, TunnelConnectResult result, TunnelConnectError expected) =>
        Record(result.Error == expected, what, result.ToString(), expected.ToString());

    public void Refused(string what, TunnelConnectResult result, TunnelStatus expected) =>
        Record(result.Error == TunnelConnectError.Refused && result.Status == expected, what, result.ToString(), $"refused: {expected}");

    public void Text(string what, string actual, string expected) =>
        Record(actual == expected, what, actual, expected);

    public void Fail(string what) => Record(false, what, "failed", "success");

    private void Record(bool ok, string what, string actual, string expected)
    {
        if (ok)
        {
            Passed++;
            Console.WriteLine($"   ok   {what}: {actual}");
        }
        else
        {
            Failures++;
            Console.WriteLine($"   FAIL {what}: {actual} (expected {expected})");
        }
    }
}
