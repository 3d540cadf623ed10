using System.Globalization;
using System.Net;

namespace Egress.Configuration;

/// <summary>
/// One key of <c>enclave.toml</c>, described once: its dotted path, what it holds, its range, its default and the
/// unit a duration is written in. <see cref="ConfigurationReader"/> reads every key through its description, the
/// options types take their defaults from it, and <c>docs/configuration.md</c> is checked against it.
/// </summary>
/// <param name="Path">The dotted path, e.g. <c>relay.idle_timeout_seconds</c>.</param>
/// <param name="Kind">What the value holds, which decides how it is read.</param>
/// <param name="Default">The value when the file does not set it: <see cref="bool"/>, <see cref="long"/>,
/// <see cref="string"/>, <see cref="IPEndPoint"/>[], a nullable <see cref="IPEndPoint"/> or an enum value one of
/// <see cref="Choices"/> spells.</param>
/// <param name="Min">The smallest integer allowed (integers only).</param>
/// <param name="Max">The largest integer allowed (integers only).</param>
/// <param name="Unit">The unit of a duration written as an integer, or <see cref="ConfigurationUnit.None"/>.</param>
internal sealed record ConfigurationKey(string Path, ConfigurationValueKind Kind, object? Default, long Min = 0, long Max = 0, ConfigurationUnit Unit = ConfigurationUnit.None)
{
    /// <summary>Describes a key that holds one of a few strings (<see cref="ConfigurationValueKind.Choice"/>).</summary>
    /// <param name="path">The dotted path, e.g. <c>egress.mode</c>.</param>
    /// <param name="choices">Its spellings and the values they mean.</param>
    /// <param name="default">The value when the file does not set it; one of <paramref name="choices"/>.</param>
    public ConfigurationKey(string path, ConfigurationChoices choices, Enum @default)
        : this(path, ConfigurationValueKind.Choice, @default)
    {
        Choices = choices;
    }

    /// <summary>Gets the spellings of a <see cref="ConfigurationValueKind.Choice"/> key; null for every other kind.</summary>
    public ConfigurationChoices? Choices { get; }

    /// <summary>Gets the section, e.g. <c>relay</c>.</summary>
    public string Section => Path[..Path.IndexOf('.', StringComparison.Ordinal)];

    /// <summary>Gets the key within its section, e.g. <c>idle_timeout_seconds</c>.</summary>
    public string Name => Path[(Path.IndexOf('.', StringComparison.Ordinal) + 1)..];

    /// <summary>Gets the TOML type the documentation names: <c>boolean</c>, <c>integer</c>, <c>string</c> or <c>array of strings</c>.</summary>
    public string TomlType => Kind switch
    {
        ConfigurationValueKind.Boolean => "boolean",
        ConfigurationValueKind.Integer => "integer",
        ConfigurationValueKind.Destinations or ConfigurationValueKind.ListenAddresses or ConfigurationValueKind.DnsUpstreams or ConfigurationValueKind.Networks => "array of strings",
        ConfigurationValueKind.Ports => "array of integers",
        ConfigurationValueKind.Enclaves => "array of tables",
        _ => "string",
    };

    /// <summary>Gets the default as the documentation writes it: <c>`3600`</c>, <c>`"auto"`</c>, <c>`[]`</c>, or <c>none (off)</c>.</summary>
    public string DocumentedDefault => Default switch
    {
        null => "none (off)",
        bool value => value ? "`true`" : "`false`",
        long value => $"`{value.ToString(CultureInfo.InvariantCulture)}`",
        string value => $"`\"{value}\"`",
        Enum value when Choices is not null => $"`\"{Choices.TextOf(value)}\"`",
        EnclaveMapping[] => "none (every CID: this file's policy)",
        string[] values => $"`[{string.Join(", ", values.Select(value => $"\"{value}\""))}]`",
        IPEndPoint[] values => $"`[{string.Join(", ", values.Select(value => $"\"{value}\""))}]`",
        _ => throw new InvalidOperationException($"{Path} has a default of an unexpected type."),
    };

    /// <summary>Gets the default of a boolean key.</summary>
    public bool DefaultBoolean => (bool)Default!;

    /// <summary>Gets the default of an integer key that is a count.</summary>
    public int DefaultInt32 => checked((int)(long)Default!);

    /// <summary>Gets the default of an integer key that is a duration, in its <see cref="Unit"/>.</summary>
    public TimeSpan DefaultDuration => ToDuration((long)Default!);

    /// <summary>Gets the default of a list of endpoints, as new objects each time (an <see cref="IPEndPoint"/> is mutable).</summary>
    public IPEndPoint[] DefaultEndPoints => [.. ((IPEndPoint[])Default!).Select(endPoint => new IPEndPoint(endPoint.Address, endPoint.Port))];

    /// <summary>Checks a duration an options type takes for this key against the range the file allows, so that a
    /// service built in code refuses at construction what <c>enclave.toml</c> would refuse at load.</summary>
    /// <param name="value">The option's value.</param>
    /// <param name="paramName">The option's path for the exception, e.g. <c>options.HeaderTimeout</c>.</param>
    /// <param name="infiniteAllowed">Whether <see cref="Timeout.InfiniteTimeSpan"/> (no timeout) is allowed too.</param>
    /// <exception cref="ArgumentOutOfRangeException">The value is outside the range.</exception>
    public void CheckOption(TimeSpan value, string paramName, bool infiniteAllowed = false)
    {
        if (infiniteAllowed && value == Timeout.InfiniteTimeSpan)
        {
            return;
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(value, ToDuration(Min), paramName);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(value, ToDuration(Max), paramName);
    }

    /// <summary>Checks a count an options type takes for this key against the range the file allows.</summary>
    /// <param name="value">The option's value.</param>
    /// <param name="paramName">The option's path for the exception, e.g. <c>options.MaxStreams</c>.</param>
    /// <exception cref="ArgumentOutOfRangeException">The value is outside the range.</exception>
    public void CheckOption(int value, string paramName)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(value, Min, paramName);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(value, Max, paramName);
    }

    /// <summary>Converts an integer read for this key to the duration it means, in <see cref="Unit"/>.</summary>
    public TimeSpan ToDuration(long value) => Unit switch
    {
        ConfigurationUnit.Milliseconds => TimeSpan.FromMilliseconds(value),
        ConfigurationUnit.Seconds => TimeSpan.FromSeconds(value),
        _ => throw new InvalidOperationException($"{Path} is not a duration."),
    };
}
