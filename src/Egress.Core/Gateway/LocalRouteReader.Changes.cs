using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Egress.Gateway;

/// <summary>The kernel's notifications that the addresses, routes or routing rules changed.</summary>
internal static unsafe partial class LocalRouteReader
{
    /// <summary>The rtnetlink multicast groups of link, address, route and rule changes, IPv4 and IPv6, as the bits of
    /// <c>sockaddr_nl.nl_groups</c> (bit <c>group − 1</c>; <c>linux/rtnetlink.h</c>): RTNLGRP_LINK (1),
    /// RTNLGRP_IPV4_IFADDR (5), RTNLGRP_IPV4_ROUTE (7), RTNLGRP_IPV4_RULE (8), RTNLGRP_IPV6_IFADDR (9),
    /// RTNLGRP_IPV6_ROUTE (11), RTNLGRP_IPV6_RULE (19). Links are there because the kernel flushes a link's IPv4 routes
    /// when it goes down without reporting each (a review saw no route message; IPv6 removals are reported).</summary>
    internal const uint ChangeGroups = 1u | (1u << 4) | (1u << 6) | (1u << 7) | (1u << 8) | (1u << 10) | (1u << 18);

    /// <summary>Bytes of <c>struct sockaddr_nl</c>.</summary>
    private const int NetlinkAddressSize = 12;

    /// <summary>
    /// Opens an rtnetlink socket subscribed to <see cref="ChangeGroups"/>: from then on, a change of a link, or an
    /// address, route or rule the kernel adds or removes in this network namespace, arrives on it as a datagram
    /// (RTM_NEWLINK, RTM_NEWADDR, RTM_DELROUTE, RTM_NEWRULE, ...; rtnetlink(7)), so a reading taken after the socket
    /// was opened misses no change (routes a link takes with it when it goes down come as the link's message).
    /// Receiving needs no privilege. A receive that fails with ENOBUFS (<see cref="SocketError.NoBufferSpaceAvailable"/>)
    /// means that notifications were dropped while the socket's buffer was full: something changed.
    /// </summary>
    /// <returns>The socket, to receive from asynchronously; the caller disposes it.</returns>
    /// <exception cref="IOException">The socket cannot be opened or subscribed (e.g. a sandbox without
    /// <c>AF_NETLINK</c>).</exception>
    public static Socket OpenChangeSocket()
    {
        int fd = Socket(AddressFamilyNetlink, SocketRaw | SocketCloseOnExec, NetlinkRoute);
        if (fd < 0)
        {
            throw LastError("cannot open an rtnetlink socket for change notifications");
        }

        byte* address = stackalloc byte[NetlinkAddressSize]; // nl_family, nl_pad, nl_pid (0: the kernel picks), nl_groups
        new Span<byte>(address, NetlinkAddressSize).Clear();
        *(ushort*)address = AddressFamilyNetlink;
        *(uint*)(address + 8) = ChangeGroups;
        if (Bind(fd, address, NetlinkAddressSize) != 0)
        {
            IOException error = LastError("cannot subscribe to rtnetlink's address, route and rule changes");
            Close(fd);
            throw error;
        }

        var handle = new SafeSocketHandle(fd, ownsHandle: true);
        try
        {
            return new Socket(handle);
        }
        catch (SocketException ex)
        {
            handle.Dispose();
            throw new IOException($"cannot receive rtnetlink's change notifications: {ex.Message}", ex);
        }
    }

    [LibraryImport("libc", EntryPoint = "bind", SetLastError = true)]
    private static partial int Bind(int fd, byte* address, uint length);
}
