using System.Security.Cryptography;
using Egress.Relay;
using Microsoft.Win32.SafeHandles;

namespace Egress.Tests.Relay;

/// <summary>A splicing relay that cannot splice copies instead, and loses nothing.</summary>
public sealed class SocketRelaySpliceFallbackTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);
    private static readonly RelayOptions Splicing = new() { UseSplice = true };

    [Test]
    public async Task WithoutAPipeEachDirectionCopiesAndLosesNothing()
    {
        int asked = 0;
        (RelayResult result, SocketRelaySession session, byte[] up, byte[] down, byte[] atServer, byte[] atClient) =
            await RelayAsync(() =>
            {
                Interlocked.Increment(ref asked);
                return null; // as when pipe2 fails: out of descriptors
            });

        Assert.Multiple(() =>
        {
            Assert.That(SHA256.HashData(atServer), Is.EqualTo(SHA256.HashData(up)));
            Assert.That(SHA256.HashData(atClient), Is.EqualTo(SHA256.HashData(down)));
            Assert.That((result.BytesAToB, result.BytesBToA), Is.EqualTo((up.Length, down.Length)));
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
            Assert.That(asked, Is.EqualTo(2), "each direction asked once, then copied");
            Assert.That((session.SplicedAToB, session.SplicedBToA), Is.EqualTo((0L, 0L)));
        });
    }

    [Test]
    public async Task ASourceThatRefusesSpliceMakesItsDirectionCopyAndLosesNothing()
    {
        // splice(socket -> regular file) fails with EINVAL, as splice from a socket type without support would.
        string path = Path.GetTempFileName();
        var handles = new List<SafeFileHandle>();
        int asked = 0;
        try
        {
            (RelayResult result, SocketRelaySession session, byte[] up, byte[] down, byte[] atServer, byte[] atClient) =
                await RelayAsync(() =>
                {
                    Interlocked.Increment(ref asked);
                    var read = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
                    var write = File.OpenHandle(path, FileMode.Open, FileAccess.Write);
                    lock (handles)
                    {
                        handles.Add(read);
                        handles.Add(write);
                    }

                    return new SplicePipe(read, write);
                });

            Assert.Multiple(() =>
            {
                Assert.That(SHA256.HashData(atServer), Is.EqualTo(SHA256.HashData(up)));
                Assert.That(SHA256.HashData(atClient), Is.EqualTo(SHA256.HashData(down)));
                Assert.That((result.BytesAToB, result.BytesBToA), Is.EqualTo((up.Length, down.Length)));
                Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
                Assert.That((session.SplicedAToB, session.SplicedBToA), Is.EqualTo((0L, 0L)));
                Assert.That(new FileInfo(path).Length, Is.Zero, "nothing went into the file");
                Assert.That(asked, Is.EqualTo(2), "each direction tried splice once, then copied for good");
            });
        }
        finally
        {
            foreach (SafeFileHandle handle in handles)
            {
                handle.Dispose();
            }

            File.Delete(path);
        }
    }

    private static async Task<(RelayResult, SocketRelaySession, byte[], byte[], byte[], byte[])> RelayAsync(Func<SplicePipe?> rentPipe)
    {
        using SocketPair front = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        using SocketPair back = await SocketPair.ConnectAsync(SocketTransport.Unix);
        byte[] up = DuplexRelayTests.RandomBytes(1024 * 1024, seed: 21);
        byte[] down = DuplexRelayTests.RandomBytes(700_000, seed: 22);
        var session = new SocketRelaySession(front.Right, back.Left, Splicing, rentPipe);

        Task<RelayResult> relay = session.RunAsync(ReadOnlyMemory<byte>.Empty, ReadOnlyMemory<byte>.Empty, CancellationToken.None);
        Task<byte[]> atClient = SocketIo.ReadToEndAsync(front.Left);
        Task<byte[]> atServer = SocketIo.ReadToEndAsync(back.Right);
        Task sendUp = SocketIo.SendChunkedAsync(front.Left, up, [100_000], shutdown: true);
        Task sendDown = SocketIo.SendChunkedAsync(back.Right, down, [70_000], shutdown: true);
        await Task.WhenAll(sendUp, sendDown, atClient, atServer).WaitAsync(HangGuard);
        RelayResult result = await relay.WaitAsync(HangGuard);
        return (result, session, up, down, await atServer, await atClient);
    }
}
