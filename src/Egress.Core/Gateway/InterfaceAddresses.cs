using System.Net;
using System.Runtime.InteropServices;

namespace Egress.Gateway;

/// <summary>
/// This machine's interface addresses, read with getifaddrs(3) (which asks rtnetlink for the links and addresses only).
/// <see cref="System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces"/> gives the same addresses but
/// also parses <c>/proc/net/route</c> and <c>/proc/net/ipv6_route</c>: 180 ms on a host with 100,000 routes, paid on
/// every re-read that a route change starts (a review measured it), where this takes well under a millisecond.
/// </summary>
internal static unsafe partial class InterfaceAddresses
{
    private const ushort FamilyIPv4 = 2;
    private const ushort FamilyIPv6 = 10;

    /// <summary>Every IPv4 and IPv6 address of every interface, with the interface's name (IPv6 link-local ones with
    /// their scope id), as getifaddrs lists them.</summary>
    /// <returns>The (interface, address) pairs.</returns>
    /// <exception cref="IOException">getifaddrs failed (e.g. a sandbox without <c>AF_NETLINK</c>).</exception>
    public static List<(string Interface, IPAddress Address)> Read()
    {
        InterfaceAddress* list;
        if (GetInterfaceAddresses(&list) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"getifaddrs failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
        }

        try
        {
            var addresses = new List<(string, IPAddress)>();
            for (InterfaceAddress* entry = list; entry is not null; entry = entry->Next)
            {
                if (entry->Address is null || entry->Name is null)
                {
                    continue;
                }

                ushort family = *(ushort*)entry->Address;
                IPAddress? address = family switch
                {
                    FamilyIPv4 => new IPAddress(new ReadOnlySpan<byte>(entry->Address + 4, 4)), // sockaddr_in.sin_addr
                    FamilyIPv6 => new IPAddress(new ReadOnlySpan<byte>(entry->Address + 8, 16), *(uint*)(entry->Address + 24)), // sin6_addr, sin6_scope_id
                    _ => null,
                };
                if (address is not null)
                {
                    addresses.Add((Marshal.PtrToStringUTF8((nint)entry->Name) ?? "?", address));
                }
            }

            return addresses;
        }
        finally
        {
            FreeInterfaceAddresses(list);
        }
    }

    /// <summary><c>struct ifaddrs</c> (ifaddrs.h), as far as it is read.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct InterfaceAddress
    {
        public InterfaceAddress* Next;
        public byte* Name;
        public uint Flags;
        public byte* Address;
        public byte* Netmask;
        public byte* BroadcastOrDestination;
        public void* Data;
    }

    [LibraryImport("libc", EntryPoint = "getifaddrs", SetLastError = true)]
    private static partial int GetInterfaceAddresses(InterfaceAddress** list);

    [LibraryImport("libc", EntryPoint = "freeifaddrs")]
    private static partial void FreeInterfaceAddresses(InterfaceAddress* list);
}
