using Egress.Policy;

namespace Egress.Configuration;

/// <summary>
/// One <c>egress.destinations</c> entry as read, parsed once: the text, where it was written, and either its rule or
/// why it is invalid. The policy, the policy digest and the warnings all use this one parse; an invalid entry is
/// reported (at <see cref="Location"/>) by whichever of them needs the rules first.
/// </summary>
/// <param name="Text">The entry exactly as written.</param>
/// <param name="Location">Where the entry was written (<c>file:line:col</c>).</param>
/// <param name="Rule">The parsed rule, or null when the entry is invalid.</param>
/// <param name="Error">Why the entry is invalid (<c>invalid destination "a.*.com": ...</c>), or null when it is valid.</param>
internal sealed record DestinationEntry(string Text, SourceLocation Location, DestinationRule? Rule, string? Error)
{
    /// <summary>Parses <paramref name="text"/> written at <paramref name="location"/>.</summary>
    public static DestinationEntry Parse(string text, SourceLocation location) =>
        DestinationRule.TryParse(text, out DestinationRule? rule, out string? error)
            ? new DestinationEntry(text, location, rule, null)
            : new DestinationEntry(text, location, null, error);

    /// <summary>Gets the rule, or throws the entry's error located at <see cref="Location"/>.</summary>
    /// <exception cref="ConfigurationException">The entry is invalid.</exception>
    public DestinationRule GetRule() => Rule ?? throw ToException();

    /// <summary>The entry's <see cref="Error"/> as an exception located at <see cref="Location"/>; only for an invalid entry.</summary>
    public ConfigurationException ToException() => new(Location, ConfigurationKeys.EgressDestinations.Path, Error!);
}
