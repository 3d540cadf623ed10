namespace Egress.Enclave.Rules;

/// <summary>
/// The kernel setting <c>rules --apply</c> changes besides routes and rules: TCP timestamps without per-connection
/// offsets (<c>net.ipv4.tcp_timestamps = 2</c>, for IPv4 and IPv6, per network namespace; kernel
/// Documentation/networking/ip-sysctl.rst).
/// </summary>
/// <remarks>
/// Every redirected connection lands on one proxy address, so the proxy's side of each is told apart by the
/// application's source address and port alone. When the destination closes first, the proxy passes the FIN on first
/// and its side keeps the TIME_WAIT (60 s). conntrack gives a new connection whose tuple after the DNAT is taken
/// another source port, but once the entry that took it is gone (a later connection with its original tuple reopened
/// it), the port is free in conntrack while the proxy's TIME_WAIT on it lives on: a connection from that port to
/// another destination meets it. Linux lets a SYN take over a TIME_WAIT when its timestamp is newer (RFC 6191); with
/// the kernel's default random offset per source and destination address pair (value 1), a timestamp toward another
/// destination is older whenever that destination's offset is the smaller: the SYN is dropped (counted as
/// <c>TcpExtPAWSTimewait</c>) and the application's connect waits for a retransmission, 1 s or more. Measured in
/// benchmarks/run.sh, whose connection-rate section leaves tens of thousands of such TIME_WAITs: HTTP connections per
/// second through Egress went from 0.23x to 0.60x HAProxy's with this setting (and the echo client's from 0.76x to
/// 0.90x). Inside an enclave every TCP connection is on loopback (all else goes through the proxy, and the parent
/// opens connections of its own), so the offsets hid nothing from anyone outside.
/// </remarks>
internal static class TcpTimestamps
{
    /// <summary>The sysctl name.</summary>
    public const string Name = "net.ipv4.tcp_timestamps";

    /// <summary>Timestamps on, from one clock for every connection.</summary>
    public const string WithoutOffsets = "2";

    /// <summary>The kernel's default: timestamps on, with a random offset per address pair.</summary>
    public const string PerConnectionOffsets = "1";

    /// <summary>What the setting is for, in one line.</summary>
    public const string Description = "TCP timestamps without per-connection offsets, so a connection's SYN can take over the proxy's TIME_WAIT from the same source port";

    /// <summary>The equivalent command line.</summary>
    public const string CommandLine = "sysctl -w " + Name + "=" + WithoutOffsets;

    /// <summary>What goes wrong without it.</summary>
    public const string Consequence = "a new connection from a source port whose last connection went to another destination may wait 1 s or more for its SYN to be retransmitted";
}
