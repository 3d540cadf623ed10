using System.Net;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// Addresses of the test topology. All of 198.18.0.0/15 (RFC 2544 benchmarking) and 2001:db8::/32 (documentation)
/// live on the veth between the parent and world namespaces; nothing is ever routed off the machine.
/// </summary>
internal static class WorldAddresses
{
    /// <summary>The parent namespace's end of the veth.</summary>
    public static readonly IPAddress Parent = IPAddress.Parse("198.18.0.1");

    /// <summary>The primary world address; listed as an IP literal in the test config.</summary>
    public static readonly IPAddress Allowed = IPAddress.Parse("198.18.0.10");

    /// <summary>A second world address, not in the test config.</summary>
    public static readonly IPAddress Unlisted = IPAddress.Parse("198.18.0.11");

    /// <summary>A world address inside the allowed CIDR 198.18.1.0/24.</summary>
    public static readonly IPAddress InAllowedCidr = IPAddress.Parse("198.18.1.20");

    /// <summary>A world address that serves like the others but must always be denied.</summary>
    public static readonly IPAddress Denied = IPAddress.Parse("198.18.0.99");

    /// <summary>Where dnsmasq answers as the authoritative upstream.</summary>
    public static readonly IPAddress Dns = IPAddress.Parse("198.18.0.53");

    /// <summary>A metadata-service-like address that truly exists in the world namespace and would answer.</summary>
    public static readonly IPAddress Metadata = IPAddress.Parse("169.254.169.254");

    /// <summary>Reached only through a name: the address a CNAME chain ends at.</summary>
    public static readonly IPAddress ViaCname = IPAddress.Parse("198.18.2.10");

    /// <summary>Reached only through a name: the address of a name with a 1 s TTL.</summary>
    public static readonly IPAddress ShortTtl = IPAddress.Parse("198.18.2.20");

    /// <summary>Reached only through a name: the address of a name under a wildcard entry.</summary>
    public static readonly IPAddress ViaWildcard = IPAddress.Parse("198.18.2.30");

    /// <summary>Reached only through a name: an address that exists but refuses TCP when a fixture adds its reject rule.</summary>
    public static readonly IPAddress Refusing = IPAddress.Parse("198.18.2.40");

    /// <summary>The parent namespace's IPv6 end of the veth.</summary>
    public static readonly IPAddress ParentV6 = IPAddress.Parse("2001:db8::1");

    /// <summary>The world IPv6 address, inside the allowed 2001:db8::/64.</summary>
    public static readonly IPAddress AllowedV6 = IPAddress.Parse("2001:db8::10");

    /// <summary>Every IPv4 address assigned in the world namespace with its prefix length.</summary>
    public static readonly (IPAddress Address, int PrefixLength)[] WorldV4 =
    [
        (Allowed, 15), (Unlisted, 15), (InAllowedCidr, 15), (Denied, 15), (Dns, 15), (Metadata, 32),
        (ViaCname, 15), (ShortTtl, 15), (ViaWildcard, 15), (Refusing, 15),
    ];
}
