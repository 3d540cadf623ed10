using System.ComponentModel;
using System.Net;
using System.Net.Sockets;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// Creates sockets inside a named network namespace: a dedicated thread enters the namespace with setns and creates
/// the socket there. A socket keeps its namespace for life, so accept, connect and I/O may then run on any thread.
/// </summary>
internal static class NetworkNamespace
{
    public static T Run<T>(string name, Func<T> action)
    {
        T? result = default;
        ExceptionDispatchInfo? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var handle = File.OpenHandle($"/var/run/netns/{name}", FileMode.Open, FileAccess.Read);
                if (Native.SetNs(handle, Native.CloneNewNet) != 0)
                {
                    throw new Win32Exception(Marshal.GetLastPInvokeError(), $"setns into network namespace {name} failed");
                }

                result = action();
            }
#pragma warning disable CA1031 // rethrown on the calling thread
            catch (Exception e)
#pragma warning restore CA1031
            {
                error = ExceptionDispatchInfo.Capture(e);
            }
        })
        {
            IsBackground = true,
            Name = $"netns:{name}",
        };
        thread.Start();
        thread.Join();
        error?.Throw();
        return result!;
    }

    /// <summary>A TCP socket of <paramref name="family"/> created inside <paramref name="name"/>.</summary>
    public static Socket CreateTcpSocket(string name, AddressFamily family) =>
        Run(name, () => new Socket(family, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true });

    /// <summary>Connects from inside <paramref name="name"/>; the caller owns the returned socket.</summary>
    public static async Task<Socket> ConnectAsync(string name, IPEndPoint destination, CancellationToken cancellationToken)
    {
        var socket = CreateTcpSocket(name, destination.AddressFamily);
        try
        {
            await socket.ConnectAsync(destination, cancellationToken).ConfigureAwait(false);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>True when a TCP connection from inside <paramref name="name"/> to <paramref name="destination"/> is accepted.</summary>
    public static async Task<bool> CanConnectAsync(string name, IPEndPoint destination, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            using var socket = await ConnectAsync(name, destination, cts.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return false;
        }
    }
}
