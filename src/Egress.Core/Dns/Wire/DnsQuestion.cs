namespace Egress.Dns.Wire;

/// <summary>The question of a DNS query.</summary>
/// <param name="Name">The query name in dotted form as on the wire: original case, no trailing dot (empty for
/// the root). Compare it case-insensitively.</param>
/// <param name="Type">QTYPE (1 A, 28 AAAA, 5 CNAME, ...).</param>
/// <param name="Class">QCLASS (1 IN).</param>
internal readonly record struct DnsQuestion(string Name, ushort Type, ushort Class)
{
    /// <summary>The name as log lines show it: <see cref="Name"/>, and "." for the root (a line read "denied DNS  NS").</summary>
    public string LogName => Name.Length == 0 ? "." : Name;
}
