namespace Egress.Configuration;

/// <summary>The unit an integer <see cref="ConfigurationKey"/> is written in; the key's name ends with it.</summary>
internal enum ConfigurationUnit
{
    /// <summary>Not a duration (a count, a flag, an address).</summary>
    None,

    /// <summary>Milliseconds (<c>_ms</c>).</summary>
    Milliseconds,

    /// <summary>Seconds (<c>_seconds</c>).</summary>
    Seconds,
}
