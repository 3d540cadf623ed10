using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Egress.Vsock;

/// <summary>Creates VSOCK sockets, which <see cref="Socket"/>'s constructors refuse to create.</summary>
public static class VsockSocket
{
    private const string DevicePath = "/dev/vsock";

    /// <summary>Whether this machine has VSOCK: Linux with <c>/dev/vsock</c> present.</summary>
    public static bool IsSupported => OperatingSystem.IsLinux() && File.Exists(DevicePath);

    /// <summary>
    /// Creates a stream socket of family AF_VSOCK (close-on-exec). Its <see cref="Socket.AddressFamily"/> reads
    /// <see cref="System.Net.Sockets.AddressFamily.Unknown"/>; bind, listen, accept and connect it with
    /// <see cref="VsockEndPoint"/>s.
    /// </summary>
    /// <returns>A new, unbound socket that the caller owns.</returns>
    /// <exception cref="PlatformNotSupportedException">Not Linux, or the kernel has no AF_VSOCK (EAFNOSUPPORT).</exception>
    /// <exception cref="IOException">socket(2) failed for another reason; the message carries the errno.</exception>
    public static Socket Create()
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("VSOCK sockets are only available on Linux.");
        }

        int fd = VsockNative.Socket(VsockEndPoint.NativeAddressFamily, VsockNative.SockStream | VsockNative.SockCloexec, 0);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            string message = $"socket(AF_VSOCK, SOCK_STREAM) failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)}).";
            throw errno == VsockNative.AddressFamilyNotSupported
                ? new PlatformNotSupportedException(message + " This kernel has no VSOCK support (load the vsock modules or run inside a VM).")
                : new IOException(message);
        }

        var handle = new SafeSocketHandle(fd, ownsHandle: true);
        try
        {
            return new Socket(handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Reads this machine's own context id with IOCTL_VM_SOCKETS_GET_LOCAL_CID on <c>/dev/vsock</c>.</summary>
    /// <returns>The local CID (inside a Nitro Enclave, the enclave's CID).</returns>
    /// <exception cref="PlatformNotSupportedException"><see cref="IsSupported"/> is false.</exception>
    /// <exception cref="UnauthorizedAccessException">
    /// <c>/dev/vsock</c> exists but this process may not open it for reading (by default it is root's, mode 0600).
    /// </exception>
    /// <exception cref="IOException">
    /// <c>/dev/vsock</c> cannot be opened for another reason (a <see cref="FileNotFoundException"/> when it was removed
    /// after the check), or the ioctl failed; the message carries the errno.
    /// </exception>
    public static uint GetLocalCid()
    {
        if (!IsSupported)
        {
            throw new PlatformNotSupportedException($"VSOCK is not available: {DevicePath} does not exist.");
        }

        using SafeFileHandle device = File.OpenHandle(DevicePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        if (VsockNative.Ioctl(device, VsockNative.IoctlGetLocalCid, out uint cid) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException(
                $"ioctl(IOCTL_VM_SOCKETS_GET_LOCAL_CID) on {DevicePath} failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)}).");
        }

        return cid;
    }
}
