using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Egress.Vsock;

/// <summary>The few libc calls VSOCK needs that System.Net.Sockets does not make.</summary>
internal static partial class VsockNative
{
    /// <summary>SOCK_STREAM.</summary>
    public const int SockStream = 1;

    /// <summary>SOCK_CLOEXEC (Linux, every architecture .NET runs on).</summary>
    public const int SockCloexec = 0x80000;

    /// <summary>IOCTL_VM_SOCKETS_GET_LOCAL_CID = _IO(7, 0xb9).</summary>
    public const nuint IoctlGetLocalCid = 0x7b9;

    /// <summary>EAFNOSUPPORT.</summary>
    public const int AddressFamilyNotSupported = 97;

    [LibraryImport("libc", EntryPoint = "socket", SetLastError = true)]
    public static partial int Socket(int domain, int type, int protocol);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(SafeFileHandle fd, nuint request, out uint value);
}
