namespace Egress.Policy;

/// <summary>The destinations list holds invalid entries; <see cref="Errors"/> names each one and why.</summary>
public sealed class PolicyException : Exception
{
    /// <summary>Creates the exception from one message per invalid entry.</summary>
    /// <param name="errors">One message per invalid entry.</param>
    public PolicyException(IReadOnlyList<string> errors)
        : base(string.Join(Environment.NewLine, errors ?? throw new ArgumentNullException(nameof(errors))))
    {
        Errors = errors;
    }

    /// <summary>One message per invalid entry, e.g. <c>invalid destination "a.*.com": '*' may only ...</c>.</summary>
    public IReadOnlyList<string> Errors { get; }
}
