using System.Net.Sockets;
using Egress.Relay;
using Egress.Sockets;

namespace Egress.Tests.Relay;

/// <summary>The kernel pipe of the splicing relay, against real socket pairs.</summary>
public sealed class SplicePipeTests
{
    [TestCase(SocketTransport.Unix)]
    [TestCase(SocketTransport.Tcp)]
    public async Task BytesGoSocketToPipeToSocketAndThePipeCountsThem(SocketTransport transport)
    {
        using SocketPair from = await SocketPair.ConnectAsync(transport);
        using SocketPair to = await SocketPair.ConnectAsync(transport);
        using SplicePipe pipe = SplicePipe.Rent();
        from.Right.Blocking = false; // as the relay sets them: a blocking TCP socket would wait inside splice
        to.Left.Blocking = false;

        Assert.That(pipe.FillFrom(from.Right.SafeHandle), Is.EqualTo(SplicePipe.WouldBlock), "nothing sent yet");
        await from.Left.SendAsync("hello, pipe"u8.ToArray());
        int filled = await FillWhenReadyAsync(pipe, from.Right);
        Assert.Multiple(() =>
        {
            Assert.That(filled, Is.EqualTo(11));
            Assert.That(pipe.Buffered, Is.EqualTo(11));
        });

        Assert.Multiple(async () =>
        {
            Assert.That(pipe.DrainTo(to.Left.SafeHandle), Is.EqualTo(11));
            Assert.That(pipe.Buffered, Is.Zero);
            Assert.That(await SocketIo.ReadExactlyAsync(to.Right, 11), Is.EqualTo("hello, pipe"u8.ToArray()));
        });

        from.Left.Shutdown(SocketShutdown.Send);
        Assert.That(await FillWhenReadyAsync(pipe, from.Right), Is.Zero, "end of stream");
    }

    [Test]
    public async Task ReadIntoTakesTheHeadOfThePipeAndNeverMoreThanItHolds()
    {
        using SocketPair from = await SocketPair.ConnectAsync(SocketTransport.Unix);
        using SplicePipe pipe = SplicePipe.Rent();
        await from.Left.SendAsync("abcdef"u8.ToArray());
        await FillWhenReadyAsync(pipe, from.Right);

        byte[] head = new byte[4];
        byte[] rest = new byte[100];
        Assert.Multiple(() =>
        {
            Assert.That(pipe.ReadInto(head), Is.EqualTo(4));
            Assert.That(head, Is.EqualTo("abcd"u8.ToArray()));
            Assert.That(pipe.ReadInto(rest), Is.EqualTo(2));
            Assert.That(rest.AsSpan(0, 2).ToArray(), Is.EqualTo("ef"u8.ToArray()));
            Assert.That(pipe.Buffered, Is.Zero);
        });
    }

    [Test]
    public async Task AResetPeerIsASocketErrorNotAnEndOfStream()
    {
        using SocketPair from = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        using SplicePipe pipe = SplicePipe.Rent();
        SocketReset.Reset(from.Left);
        Assert.That(from.Right.Poll(TimeSpan.FromSeconds(10), SelectMode.SelectRead), Is.True, "the reset arrived"); // poll leaves the error pending

        var error = Assert.Throws<SocketException>(() => pipe.FillFrom(from.Right.SafeHandle));
        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionReset));
    }

    [Test]
    public async Task APipeReturnedWithBytesInItIsClosedNotHandedOutAgain()
    {
        using SocketPair from = await SocketPair.ConnectAsync(SocketTransport.Unix);
        SplicePipe dirty = SplicePipe.Rent();
        await from.Left.SendAsync("left over"u8.ToArray());
        await FillWhenReadyAsync(dirty, from.Right);

        SplicePipe.Return(dirty); // as an aborted relay does
        using SplicePipe next = SplicePipe.Rent();

        Assert.Multiple(() =>
        {
            Assert.That(next, Is.Not.SameAs(dirty));
            Assert.That(next.Buffered, Is.Zero);
            Assert.That(() => dirty.ReadInto(new byte[16]), Throws.InstanceOf<ObjectDisposedException>(), "closed");
        });
    }

    [Test]
    public async Task APipeHoldsAQuarterMebibyteSoOneFrameCarriesMoreThanTheKernelDefault()
    {
        using SocketPair from = await SocketPair.ConnectAsync(SocketTransport.Unix);
        using SocketPair to = await SocketPair.ConnectAsync(SocketTransport.Unix);
        from.Left.SendBufferSize = 1 << 20;
        from.Right.Blocking = false;
        to.Left.Blocking = false;
        to.Left.SendBufferSize = 1 << 20;
        byte[] sent = new byte[200 * 1024];
        Random.Shared.NextBytes(sent);
        await from.Left.SendAsync(sent);
        using SplicePipe pipe = SplicePipe.Rent();

        // Each Unix segment is moved on its own; fill until the pipe holds everything sent, or stops taking more.
        for (int read = await FillWhenReadyAsync(pipe, from.Right); read > 0 && pipe.Buffered < sent.Length;)
        {
            read = pipe.FillFrom(from.Right.SafeHandle);
        }

        Assert.Multiple(() =>
        {
            Assert.That(pipe.Capacity, Is.EqualTo(SplicePipe.PreferredCapacity));
            Assert.That(pipe.Buffered, Is.EqualTo(sent.Length), "all 200 KiB in the pipe at once, beyond the kernel's default 64 KiB");
        });

        int drained = 0;
        while (pipe.Buffered > 0)
        {
            int moved = pipe.DrainTo(to.Left.SafeHandle);
            Assert.That(moved, Is.GreaterThan(0), "the destination has room for 200 KiB");
            drained += moved;
        }

        Assert.Multiple(async () =>
        {
            Assert.That(drained, Is.EqualTo(sent.Length));
            Assert.That(await SocketIo.ReadExactlyAsync(to.Right, sent.Length), Is.EqualTo(sent));
        });
    }

    [Test]
    public void ResizingADescriptorThatIsNotAPipeLeavesTheFallbackCapacity()
    {
        using Microsoft.Win32.SafeHandles.SafeFileHandle notAPipe = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Write);
        Assert.That(SpliceNative.ResizePipe(notAPipe, SplicePipe.PreferredCapacity, fallback: 12345), Is.EqualTo(12345));
    }

    private static async Task<int> FillWhenReadyAsync(SplicePipe pipe, Socket source)
    {
        await source.ReceiveAsync(Memory<byte>.Empty).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        return pipe.FillFrom(source.SafeHandle);
    }
}
