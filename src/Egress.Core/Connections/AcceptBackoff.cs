namespace Egress.Connections;

/// <summary>
/// How long an accept loop waits after a failed accept: 10 ms after the first failure, doubling with each failure in a
/// row up to 1 s, back to the start after an accept succeeds. Out of descriptors, accept fails at once and for as
/// long as nothing is closed; a fixed short wait would spin and log hundreds of lines a second.
/// </summary>
internal sealed class AcceptBackoff
{
    /// <summary>The wait after the first failure.</summary>
    public static readonly TimeSpan First = TimeSpan.FromMilliseconds(10);

    /// <summary>The longest wait.</summary>
    public static readonly TimeSpan Longest = TimeSpan.FromSeconds(1);

    private TimeSpan _next = First;

    /// <summary>Gets the failures in a row so far.</summary>
    public int Failures { get; private set; }

    /// <summary>Counts a failure and returns the wait before the next accept.</summary>
    public TimeSpan Failed()
    {
        Failures++;
        var wait = _next;
        _next = _next * 2 > Longest ? Longest : _next * 2;
        return wait;
    }

    /// <summary>An accept succeeded: the next failure waits <see cref="First"/> again.</summary>
    public void Succeeded()
    {
        Failures = 0;
        _next = First;
    }
}
