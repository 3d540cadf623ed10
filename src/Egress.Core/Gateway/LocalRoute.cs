using System.Net;

namespace Egress.Gateway;

/// <summary>
/// A route by which the kernel delivers a destination to this machine itself (<c>ip route show table all type local</c>
/// and <c>type anycast</c>): every address of an interface has one, and so has a prefix routed locally as a whole
/// (AnyIP, <c>ip route add local 2001:db8:5::/64 dev lo</c>), whose addresses are on no interface.
/// </summary>
/// <param name="Prefix">The destinations the route covers (a /32 or /128 for one address).</param>
/// <param name="Interface">The device the route names (<c>lo</c> for AnyIP), or <c>?</c> when the kernel names none.</param>
internal readonly record struct LocalRoute(IPNetwork Prefix, string Interface);
