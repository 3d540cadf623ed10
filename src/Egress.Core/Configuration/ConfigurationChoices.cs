using System.Diagnostics.CodeAnalysis;

namespace Egress.Configuration;

/// <summary>
/// The spellings a string key of <c>enclave.toml</c> accepts and the enum value each one means, written once: the
/// reader parses through it, the error for any other string lists it, and the logs, <c>--check-config</c>, the policy
/// digest and <c>docs/configuration.md</c> print a value back through it.
/// </summary>
internal sealed class ConfigurationChoices
{
    /// <summary><c>egress.mode</c>: <see cref="Policy.EgressMode"/>.</summary>
    public static readonly ConfigurationChoices Mode = new(
        new("enforce", Policy.EgressMode.Enforce, "deny what the list does not allow"),
        new("report", Policy.EgressMode.Report, "allow it and log each would-deny"));

    /// <summary><c>egress.tls_server_name</c>: <see cref="Tls.TlsServerNameMode"/>.</summary>
    public static readonly ConfigurationChoices TlsServerName = new(
        new("require", Tls.TlsServerNameMode.Require, "a TLS ClientHello to a learned address must name it"),
        new("if-present", Tls.TlsServerNameMode.IfPresent, "only when it names a server"),
        new("off", Tls.TlsServerNameMode.Off, null));

    /// <summary><c>enclave.netfilter</c> (and egress-enclave's <c>--netfilter</c>): <see cref="NetfilterBackend"/>.</summary>
    public static readonly ConfigurationChoices Netfilter = new(
        new("auto", NetfilterBackend.Auto, null),
        new("nft", NetfilterBackend.Nft, "nf_tables, iptables-nft"),
        new("legacy", NetfilterBackend.Legacy, "iptables-legacy"));

    /// <summary><c>enclave.report_denials</c>: <see cref="Denials.DenialDetail"/>.</summary>
    public static readonly ConfigurationChoices ReportDenials = new(
        new("destinations", Denials.DenialDetail.Destinations, "the enclave tells the parent what it denied: addresses, DNS names, server names, with counts"),
        new("counts", Denials.DenialDetail.Counts, "counts by kind and reason, no address or name"),
        new("off", Denials.DenialDetail.Off, null));

    private readonly Choice[] _choices;

    private ConfigurationChoices(params Choice[] choices)
    {
        _choices = choices;
        Expected = "expected " + string.Join(", ", choices[..^1].Select(Describe)) + " or " + Describe(choices[^1]);
    }

    /// <summary>Gets the start of the error for a string that is none of the spellings, e.g.
    /// <c>expected "enforce" (deny ...) or "report" (allow ...)</c>.</summary>
    public string Expected { get; }

    /// <summary>Reads a spelling (exact, case-sensitive, as TOML strings are).</summary>
    /// <param name="text">The string as the file writes it.</param>
    /// <param name="value">The value it means, boxed; null when it is none of the spellings.</param>
    /// <returns>Whether <paramref name="text"/> is one of the spellings.</returns>
    public bool TryRead(string text, [NotNullWhen(true)] out Enum? value)
    {
        foreach (Choice choice in _choices)
        {
            if (choice.Text == text)
            {
                value = choice.Value;
                return true;
            }
        }

        value = null;
        return false;
    }

    /// <summary>Reads a spelling as the enum it means.</summary>
    /// <typeparam name="TValue">The enum these choices are of.</typeparam>
    /// <param name="text">The string as the file or command line writes it.</param>
    /// <param name="value">The value; default when it is none of the spellings.</param>
    /// <returns>Whether <paramref name="text"/> is one of the spellings.</returns>
    public bool TryRead<TValue>(string text, out TValue value)
        where TValue : struct, Enum
    {
        if (TryRead(text, out Enum? boxed))
        {
            value = (TValue)boxed;
            return true;
        }

        value = default;
        return false;
    }

    /// <summary>The spelling of a value, e.g. <c>if-present</c> for <see cref="Tls.TlsServerNameMode.IfPresent"/>.</summary>
    /// <param name="value">A value these choices list.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="value"/> is not one of them.</exception>
    public string TextOf(Enum value)
    {
        ArgumentNullException.ThrowIfNull(value);
        foreach (Choice choice in _choices)
        {
            if (choice.Value.Equals(value))
            {
                return choice.Text;
            }
        }

        throw new ArgumentOutOfRangeException(nameof(value), value, "Not one of this key's values.");
    }

    private static string Describe(Choice choice) =>
        choice.Meaning is null ? $"\"{choice.Text}\"" : $"\"{choice.Text}\" ({choice.Meaning})";

    private sealed record Choice(string Text, Enum Value, string? Meaning);
}
