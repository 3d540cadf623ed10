using Egress.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Net;

namespace Egress.Policy;

/// <summary>
/// One entry of an Evervault-compatible <c>destinations = [...]</c> list: a host name, <c>*.domain</c>, <c>*</c>,
/// an IP address or a CIDR network, each optionally followed by the TCP ports it allows (<c>api.example.com:443</c>,
/// <c>smtp.example.com:587,465</c>, <c>203.0.113.0/24:8000-8100</c>, <c>[2001:db8::1]:443</c>); without ports, every port.
/// URLs and scope ids are rejected.
/// Names compare case-insensitively and a trailing dot is ignored. A network with host bits set after its prefix
/// (<c>10.0.0.1/8</c>) and the /0 networks are rejected rather than widened silently.
/// </summary>
public sealed class DestinationRule
{
    internal DestinationRule(DestinationRuleKind kind, string text, string? hostName, IPAddress? address, IPNetwork? network, PortSet? ports = null)
    {
        Ports = ports;
        Kind = kind;
        Text = text;
        HostName = hostName;
        Address = address;
        Network = network;
    }

    /// <summary>What the entry allows.</summary>
    public DestinationRuleKind Kind { get; }

    /// <summary>The canonical entry: lower case, no trailing dot, addresses and networks in standard notation.</summary>
    public string Text { get; }

    /// <summary>
    /// For <see cref="DestinationRuleKind.ExactHost"/> the host; for <see cref="DestinationRuleKind.WildcardSubdomain"/>
    /// the domain whose subdomains match (<c>example.com</c> for <c>*.example.com</c>); otherwise <see langword="null"/>.
    /// </summary>
    public string? HostName { get; }

    /// <summary>The address of an <see cref="DestinationRuleKind.Address"/> entry, otherwise <see langword="null"/>.</summary>
    public IPAddress? Address { get; }

    /// <summary>The network of a <see cref="DestinationRuleKind.Network"/> entry, otherwise <see langword="null"/>.</summary>
    public IPNetwork? Network { get; }

    /// <summary>The TCP ports the entry allows; null: every port (an entry written without <c>:PORTS</c>).</summary>
    internal PortSet? Ports { get; }

    /// <summary>This entry restricted to <paramref name="ports"/>; its text gains <c>:PORTS</c> (an IPv6 address in
    /// brackets).</summary>
    internal DestinationRule WithPorts(PortSet ports) =>
        new(Kind, (Kind == DestinationRuleKind.Address && Address!.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{Text}]" : Text) + ":" + ports.Text,
            HostName, Address, Network, ports);

    /// <summary>Parses one destination entry.</summary>
    /// <param name="entry">The entry as written in the configuration.</param>
    /// <returns>The rule.</returns>
    /// <exception cref="ArgumentException">The entry is invalid; the message names it and says why.</exception>
    public static DestinationRule Parse(string entry) =>
        TryParse(entry, out var rule, out var error) ? rule : throw new ArgumentException(error, nameof(entry));

    /// <summary>Parses one destination entry without throwing.</summary>
    /// <param name="entry">The entry as written in the configuration.</param>
    /// <param name="rule">The rule, when valid.</param>
    /// <param name="error">When invalid, a message naming the entry (control and format characters escaped, <c>\n</c>,
    /// <c>\u001B</c>: one printable line) and why, e.g.
    /// <c>invalid destination "api.example.com:0": port "0" is not a number from 1 to 65535</c>.</param>
    /// <returns><see langword="true"/> when the entry is valid.</returns>
    public static bool TryParse(
        string? entry,
        [NotNullWhen(true)] out DestinationRule? rule,
        [NotNullWhen(false)] out string? error)
    {
        string? reason = DestinationRuleParser.TryParse(entry ?? string.Empty, out rule);
        // Control and format characters of the entry (and of the reason, which may quote them) escaped: one printable line.
        error = reason is null ? null : $"invalid destination \"{PrintableText.Shorten(entry ?? string.Empty)}\": {PrintableText.Escape(reason)}";
        return rule is not null;
    }

    /// <summary>The canonical entry (<see cref="Text"/>).</summary>
    /// <returns><see cref="Text"/>.</returns>
    public override string ToString() => Text;
}
