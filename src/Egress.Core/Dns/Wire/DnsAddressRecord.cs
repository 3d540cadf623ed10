using System.Net;

namespace Egress.Dns.Wire;

/// <summary>An address answered for a query name, directly or through its CNAME chain.</summary>
/// <param name="Address">The IPv4 (A) or IPv6 (AAAA) address.</param>
/// <param name="Ttl">How long the address may be relied on: the smaller of the A/AAAA record's TTL and the TTLs of
/// the CNAME records that lead to it from the question name.</param>
/// <param name="OwnerName">The name on the CNAME chain that owns the A/AAAA record, in dotted form and spelled as
/// the chain reached it: the question name as asked, or the target written in the CNAME that leads to it (owner
/// names match case-insensitively, so the record's own spelling may differ in case).</param>
internal readonly record struct DnsAddressRecord(IPAddress Address, TimeSpan Ttl, string OwnerName);
