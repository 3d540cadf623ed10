using System.Net;
using System.Net.Sockets;
using Egress.Sockets;
using Egress.Tests.Relay;
using Egress.Tunnel;

namespace Egress.Tests.Tunnel;

public sealed class TunnelHandshakeTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    [Test]
    public async Task RequestSplitOneByteAtATimeIsReadWithoutConsumingWhatFollows()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        TunnelRequest sent = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("2001:db8::7"), 587), "smtp.example.com");
        byte[] bytes = Encode(sent);

        Task<(TunnelReadResult Result, TunnelRequest Request)> reading = TunnelHandshake.ReadRequestAsync(pair.Right, CancellationToken.None).AsTask();
        foreach (byte b in bytes)
        {
            await pair.Left.SendAsync(new[] { b });
            await Task.Delay(1);
        }

        await pair.Left.SendAsync("early"u8.ToArray());
        var (result, request) = await reading.WaitAsync(HangGuard);

        Assert.Multiple(async () =>
        {
            Assert.That(result, Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(request, Is.EqualTo(sent));
            Assert.That(await SocketIo.ReadExactlyAsync(pair.Right, 5), Is.EqualTo("early"u8.ToArray()), "bytes after the header stay in the socket");
        });
    }

    [Test]
    public async Task ResponseAndBannerInOneSegmentDeliverTheBanner()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        TunnelRequest request = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("198.18.0.10"), 25), null);
        byte[] expectedRequest = Encode(request);
        byte[] banner = "220 mail.example ESMTP\r\n"u8.ToArray();

        var handshake = TunnelHandshake.RequestAsync(pair.Left, request, CancellationToken.None).AsTask();
        byte[] atParent = await SocketIo.ReadExactlyAsync(pair.Right, expectedRequest.Length).WaitAsync(HangGuard);
        byte[] response = new byte[TunnelCodec.MaxResponseLength];
        int length = TunnelCodec.WriteResponse(new TunnelResponse(TunnelStatus.Ok), response);
        await pair.Right.SendAsync(response.AsSpan(0, length).ToArray().Concat(banner).ToArray());
        var (result, received, following) = await handshake.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(atParent, Is.EqualTo(expectedRequest));
            Assert.That(result, Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(received, Is.EqualTo(new TunnelResponse(TunnelStatus.Ok)));
            Assert.That(following.ToArray(), Is.EqualTo(banner));
        });
    }

    [Test]
    public async Task ResponseWithDetailSplitAcrossSendsHasNothingFollowing()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        var handshake = TunnelHandshake.RequestAsync(pair.Left, TunnelRequest.ForDns(), CancellationToken.None).AsTask();
        await SocketIo.ReadExactlyAsync(pair.Right, 4).WaitAsync(HangGuard);
        byte[] response = new byte[TunnelCodec.MaxResponseLength];
        int length = TunnelCodec.WriteResponse(new TunnelResponse(TunnelStatus.DeniedByPolicy, "no"), response);
        await pair.Right.SendAsync(response.AsMemory(0, 2));
        await Task.Delay(10);
        await pair.Right.SendAsync(response.AsMemory(2, length - 2));
        var (result, received, following) = await handshake.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(result, Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(received, Is.EqualTo(new TunnelResponse(TunnelStatus.DeniedByPolicy, "no")));
            Assert.That(following.IsEmpty, Is.True);
        });
    }

    [TestCase(new byte[] { 3 }, TunnelReadResult.UnsupportedVersion)]
    [TestCase(new byte[] { 1, 9 }, TunnelReadResult.UnsupportedKind)]
    [TestCase(new byte[] { 1, 1, 0x01, 0x2D }, TunnelReadResult.Oversize)]
    [TestCase(new byte[] { 1, 2, 0, 1, 0 }, TunnelReadResult.LengthMismatch)]
    [TestCase(new byte[] { 1, 1, 0, 8, 5, 1, 2, 3, 4, 0, 25, 0 }, TunnelReadResult.InvalidAddressFamily)]
    public async Task MalformedRequestIsReportedAsSoonAsItsBytesArrive(byte[] bytes, object expectedValue)
    {
        var expected = (TunnelReadResult)expectedValue;
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        await pair.Left.SendAsync(bytes); // nothing more is sent and the stream stays open

        var (result, _) = await TunnelHandshake.ReadRequestAsync(pair.Right, CancellationToken.None).AsTask().WaitAsync(HangGuard);

        Assert.That(result, Is.EqualTo(expected));
    }

    [Test]
    public async Task UnknownResponseStatusIsReported()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        await pair.Right.SendAsync(new byte[] { TunnelCodec.Version, 0xEE, 0 });

        var (result, _, following) = await TunnelHandshake.RequestAsync(pair.Left, TunnelRequest.ForDns(), CancellationToken.None)
            .AsTask().WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(result, Is.EqualTo(TunnelReadResult.UnknownStatus));
            Assert.That(following.IsEmpty, Is.True);
        });
    }

    [Test]
    public async Task PeerClosingMidRequestIsATruncatedStream()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        byte[] bytes = Encode(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Loopback, 443), "a.example"));
        await pair.Left.SendAsync(bytes.AsMemory(0, bytes.Length - 1));
        pair.Left.Shutdown(SocketShutdown.Send);

        var (result, _) = await TunnelHandshake.ReadRequestAsync(pair.Right, CancellationToken.None).AsTask().WaitAsync(HangGuard);

        Assert.That(result, Is.EqualTo(TunnelReadResult.TruncatedStream));
    }

    [Test]
    public async Task PeerClosingMidResponseIsATruncatedStream()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        await pair.Right.SendAsync(new byte[] { TunnelCodec.Version, (byte)TunnelStatus.Ok });
        pair.Right.Shutdown(SocketShutdown.Send);

        var (result, _, _) = await TunnelHandshake.RequestAsync(pair.Left, TunnelRequest.ForDns(), CancellationToken.None)
            .AsTask().WaitAsync(HangGuard);

        Assert.That(result, Is.EqualTo(TunnelReadResult.TruncatedStream));
    }

    [Test]
    public async Task CancellationStopsWaitingForTheResponse()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        using var cancel = new CancellationTokenSource();
        var handshake = TunnelHandshake.RequestAsync(pair.Left, TunnelRequest.ForDns(), cancel.Token).AsTask();
        await SocketIo.ReadExactlyAsync(pair.Right, 4).WaitAsync(HangGuard);

        await cancel.CancelAsync();

        Assert.That(async () => await handshake.WaitAsync(HangGuard), Throws.InstanceOf<OperationCanceledException>());
    }

    [Test]
    public async Task CloseAfterAnAnswerEndsWithFinEvenWithUnreadBytes()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        await pair.Left.SendAsync(new byte[] { 7, 1, 2, 3, 4, 5, 6, 7, 8 });
        var (result, _) = await TunnelHandshake.ReadRequestAsync(pair.Right, CancellationToken.None).AsTask().WaitAsync(HangGuard);
        await TunnelHandshake.SendResponseAsync(pair.Right, new TunnelResponse(TunnelStatus.UnsupportedVersion, "v7"), CancellationToken.None);
        await Task.Delay(10); // let the unread bytes land before the close
        TunnelHandshake.Close(pair.Right);

        byte[] answer = await SocketIo.ReadExactlyAsync(pair.Left, 5).WaitAsync(HangGuard);
        SocketError end = await SocketIo.ReadUntilEndAsync(pair.Left).WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(result, Is.EqualTo(TunnelReadResult.UnsupportedVersion));
            Assert.That(answer, Is.EqualTo(new byte[] { TunnelCodec.Version, (byte)TunnelStatus.UnsupportedVersion, 2, (byte)'v', (byte)'7' }));
            Assert.That(end, Is.EqualTo(SocketError.Success), "a clean FIN, not RST");
        });
    }

    /// <summary>A reused stream's next request starts with bytes already read (with the END frame, or while idle):
    /// split anywhere, the request is whole, and what followed it, in those bytes or in the receive that completed the
    /// request, is handed on.</summary>
    [TestCase(0)]
    [TestCase(1)]
    [TestCase(3)]
    [TestCase(4)]
    [TestCase(5)]
    [TestCase(-1)]
    public async Task ARequestStartingInBytesAlreadyReadIsReadWhole(int split)
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        TunnelRequest sent = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("198.51.100.4"), 443), "api.example.com").AsVersion2(77);
        byte[] bytes = [.. Encode(sent), .. "frames"u8];
        int already = split < 0 ? bytes.Length : split; // -1: the whole request and what follows it were read already

        var reading = TunnelHandshake.ReadRequestAsync(pair.Right, bytes.AsMemory(0, already), CancellationToken.None).AsTask();
        await pair.Left.SendAsync(bytes.AsMemory(already));
        var (result, request, following) = await reading.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(result, Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(request, Is.EqualTo(sent));

            // Read already, or received with the request's last bytes (one send, one receive on a Unix socket): handed
            // on, as a version 2 request's early data goes to the relay without another receive.
            Assert.That(following.ToArray(), Is.EqualTo("frames"u8.ToArray()), "bytes past the request handed on");
            Assert.That(pair.Right.Available, Is.Zero, "none left in the socket");
        });
    }

    [Test]
    public async Task RequestOnAStreamTheParentClosedSaysNoResponseByteArrived()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        var handshake = TunnelHandshake.RequestCountingAsync(pair.Left, TunnelRequest.ForDns(), CancellationToken.None).AsTask();
        await SocketIo.ReadExactlyAsync(pair.Right, Encode(TunnelRequest.ForDns()).Length).WaitAsync(HangGuard);
        pair.Right.Shutdown(SocketShutdown.Send);

        var (result, _, _, anyReceived) = await handshake.WaitAsync(HangGuard);

        Assert.That((result, anyReceived), Is.EqualTo((TunnelReadResult.TruncatedStream, false)));
    }

    [Test]
    public async Task RequestWhoseResponseEndsHalfWaySaysAResponseByteArrived()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        var handshake = TunnelHandshake.RequestCountingAsync(pair.Left, TunnelRequest.ForDns(), CancellationToken.None).AsTask();
        await SocketIo.ReadExactlyAsync(pair.Right, Encode(TunnelRequest.ForDns()).Length).WaitAsync(HangGuard);
        await pair.Right.SendAsync(new byte[] { TunnelCodec.Version });
        pair.Right.Shutdown(SocketShutdown.Send);

        var (result, _, _, anyReceived) = await handshake.WaitAsync(HangGuard);

        Assert.That((result, anyReceived), Is.EqualTo((TunnelReadResult.TruncatedStream, true)), "not stale: the parent began to answer");
    }

    /// <summary>
    /// The parent resets the stream after the status's first byte. Before, the reset's SocketException left the
    /// handshake without saying a byte had come, so a pooled stream's request counted as stale and was sent again (its
    /// early data too) on a new stream, although the parent had begun to answer it.
    /// </summary>
    [Test]
    public async Task RequestWhoseResponseIsResetHalfWaySaysAResponseByteArrived()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        var handshake = TunnelHandshake.RequestCountingAsync(pair.Left, TunnelRequest.ForDns(), CancellationToken.None).AsTask();
        await SocketIo.ReadExactlyAsync(pair.Right, Encode(TunnelRequest.ForDns()).Length).WaitAsync(HangGuard);
        await pair.Right.SendAsync(new byte[] { TunnelCodec.Version });
        await Task.Delay(50); // the byte is in the enclave's receive queue before the RST
        SocketReset.Reset(pair.Right);

        var (result, _, _, anyReceived) = await handshake.WaitAsync(HangGuard);

        Assert.That((result, anyReceived), Is.EqualTo((TunnelReadResult.TruncatedStream, true)), "not stale: the parent began to answer");
    }

    private static byte[] Encode(TunnelRequest request)
    {
        byte[] buffer = new byte[TunnelCodec.MaxRequestLength];
        return buffer.AsSpan(0, TunnelCodec.WriteRequest(request, buffer)).ToArray();
    }
}
