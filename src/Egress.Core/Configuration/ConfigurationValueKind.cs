namespace Egress.Configuration;

/// <summary>What a <see cref="ConfigurationKey"/> holds, which decides how <see cref="ConfigurationReader"/> reads it.</summary>
internal enum ConfigurationValueKind
{
    /// <summary>A TOML boolean.</summary>
    Boolean,

    /// <summary>An array of IP addresses and networks (<c>ADDRESS</c>, <c>ADDRESS/LENGTH</c>) without ports.</summary>
    Networks,

    /// <summary>A TOML integer within the key's range.</summary>
    Integer,

    /// <summary>A TOML string kept as written (tunnel endpoints, parsed where they are used).</summary>
    String,

    /// <summary>An array of destination entries, each parsed into a located rule.</summary>
    Destinations,

    /// <summary>A non-empty array of distinct listen addresses (<c>IPv4:PORT</c>, <c>[IPv6]:PORT</c>).</summary>
    ListenAddresses,

    /// <summary>An array of distinct DNS upstreams (a listen address, or a bare address meaning port 53).</summary>
    DnsUpstreams,

    /// <summary>One listen address (<c>IPv4:PORT</c>, <c>[IPv6]:PORT</c>).</summary>
    ListenAddress,

    /// <summary>An array of TCP ports (integers or strings of digits, Evervault's <c>egress.ports</c>).</summary>
    Ports,

    /// <summary>One of a few strings, each meaning an enum value (<see cref="ConfigurationKey.Choices"/>).</summary>
    Choice,

    /// <summary>Where audit records go: <c>"stdout"</c> or an absolute file path.</summary>
    AuditLog,

    /// <summary>An array of tables <c>{ cid = 16 | "any", config = "PATH" }</c> (<c>[[host.enclaves]]</c>).</summary>
    Enclaves,
}
