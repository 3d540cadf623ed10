namespace Egress.Policy;

/// <summary>A name an address was learned from and when that expires (UTC ticks).</summary>
internal readonly record struct LearnedName(string Name, long ExpiresAt);
