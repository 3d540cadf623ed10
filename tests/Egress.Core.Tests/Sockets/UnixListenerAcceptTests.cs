using System.Net.Sockets;
using System.Text;
using Egress.Connections;
using Microsoft.Extensions.Logging;

namespace Egress.Tests.Sockets;

/// <summary>
/// A Unix-domain listener (egress-host's <c>unix:</c> tunnel endpoint) accepts a peer bound to a path longer than its
/// own: with the runtime's accept, one such connect ended the whole process (FailFast on the runtime's socket thread,
/// "Specified argument was out of the range of valid values"; found 5 December 2026 against egress-host).
/// </summary>
public sealed class UnixListenerAcceptTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);

    [Test]
    public async Task APeerBoundToALongerPathThanTheListenersIsAcceptedAndItsAddressRead()
    {
        string directory = Directory.CreateTempSubdirectory("egress-ux-").FullName;
        using var logs = new LogCapture();
        try
        {
            string listenPath = Path.Combine(directory, "t.sock");
            using var listening = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listening.Bind(new UnixDomainSocketEndPoint(listenPath));
            listening.Listen(16);
            var served = new List<string>();
            await using var listener = new ConnectionListener(listening, "test", async (socket, _) =>
            {
                using (socket)
                {
                    var buffer = new byte[16];
                    int read = await socket.ReceiveAsync(buffer);
                    lock (served)
                    {
                        served.Add($"{socket.RemoteEndPoint} {Encoding.ASCII.GetString(buffer, 0, read)}");
                    }

                    await socket.SendAsync("ok"u8.ToArray());
                }
            }, logs.Factory.CreateLogger("test"));
            listener.Start();

            // Longer than the listener's path by 1, by 60, and the longest a path may be (107 bytes and its NUL).
            string[] peers = [Path.Combine(directory, "tt.sock"), Path.Combine(directory, new string('a', 60)), Path.Combine(directory, new string('b', 107 - directory.Length - 1))];
            foreach (string peer in peers)
            {
                using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                client.Bind(new UnixDomainSocketEndPoint(peer));
                await client.ConnectAsync(new UnixDomainSocketEndPoint(listenPath)).WaitAsync(HangGuard);
                await client.SendAsync("hi"u8.ToArray());
                var answer = new byte[2];
                Assert.That(await client.ReceiveAsync(answer, SocketFlags.None).WaitAsync(HangGuard), Is.EqualTo(2), peer);
            }

            Assert.That(served, Is.EqualTo(peers.Select(peer => $"{peer} hi")));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
