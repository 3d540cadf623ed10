using System.Net.Sockets;

namespace Egress.Hosting;

/// <summary>
/// A listener's bind failure as one line that says what to do: the socket error's own text ("Cannot assign requested
/// address" reads like a permissions problem) followed by what it means for a listener, from bind(2).
/// </summary>
internal static class BindFailure
{
    /// <summary>The line, e.g. <c>cannot listen on tcp://198.51.100.7:4433: Cannot assign requested address (EADDRNOTAVAIL:
    /// the address is not one of this machine's or this network namespace's)</c>.</summary>
    /// <param name="what">What could not listen, as configured (an endpoint or a list of them).</param>
    /// <param name="exception">The bind or listen failure.</param>
    public static string Describe(string what, SocketException exception) =>
        $"cannot listen on {what}: {exception.Message}{Hint(exception.SocketErrorCode)}";

    /// <summary>A DNS listener's bind failure, e.g. <c>cannot listen for DNS on 127.0.0.1:53 (UDP and TCP): Address
    /// already in use; is another resolver (systemd-resolved, dnsmasq) bound there? ...</c>: only EADDRINUSE means another
    /// resolver (every error got that question before, an address on no interface too).</summary>
    public static string DescribeDns(System.Net.IPEndPoint address, SocketException exception) =>
        $"cannot listen for DNS on {address} (UDP and TCP): {exception.Message}"
        + (exception.SocketErrorCode == SocketError.AddressAlreadyInUse
            ? "; is another resolver (systemd-resolved, dnsmasq) bound there? Change [enclave] dns_listen or stop it."
            : Hint(exception.SocketErrorCode));

    /// <summary>What <paramref name="error"/> means for a listener, in brackets after a space; empty for other errors.</summary>
    public static string Hint(SocketError error) => error switch
    {
        SocketError.AddressNotAvailable =>
            " (EADDRNOTAVAIL: the address is not one of this machine's or this network namespace's; listen on one that `ip address` shows, or 0.0.0.0 / [::])",
        SocketError.AddressAlreadyInUse =>
            " (EADDRINUSE: another socket is bound there, e.g. another instance still running; `ss -ltnp` or `ss -lxp` shows which process)",
        SocketError.AccessDenied =>
            " (EACCES: ports below 1024 need root or CAP_NET_BIND_SERVICE; a unix: path needs write access to its directory)",
        _ => string.Empty,
    };
}
