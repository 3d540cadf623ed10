namespace Egress.Policy;

/// <summary>What a <see cref="DestinationRule"/> allows.</summary>
public enum DestinationRuleKind
{
    /// <summary>One host name, e.g. <c>api.example.com</c>.</summary>
    ExactHost,

    /// <summary>Every name below a domain at any depth, e.g. <c>*.example.com</c>; not the domain itself.</summary>
    WildcardSubdomain,

    /// <summary><c>*</c>: every host name and every public address (never an internal range).</summary>
    AllowAll,

    /// <summary>One IPv4 or IPv6 address literal; allowed even inside an internal range.</summary>
    Address,

    /// <summary>An IPv4 or IPv6 network in CIDR notation; allowed even inside an internal range.</summary>
    Network,
}
