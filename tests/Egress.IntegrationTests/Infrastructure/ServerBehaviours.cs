using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>The behaviours of the C# world servers.</summary>
internal static class ServerBehaviours
{
    public const string Banner = "220 egress-test ESMTP\r\n";

    public const int ReplyAfterEofLength = 4 * 1024 * 1024;

    public const ulong ReplyAfterEofSeed = 0x5EED_0000_0000_0004UL;

    private const int BufferSize = 64 * 1024;

    public static async Task EchoAsync(NetworkStream stream, Socket socket, CancellationToken cancellationToken)
    {
        await stream.CopyToAsync(stream, BufferSize, cancellationToken).ConfigureAwait(false);
        socket.Shutdown(SocketShutdown.Send);
    }

    public static async Task BannerThenEchoAsync(NetworkStream stream, Socket socket, CancellationToken cancellationToken)
    {
        await stream.WriteAsync(Encoding.ASCII.GetBytes(Banner), cancellationToken).ConfigureAwait(false);
        await EchoAsync(stream, socket, cancellationToken).ConfigureAwait(false);
    }

    public static async Task ReplyAfterEofAsync(NetworkStream stream, Socket socket, CancellationToken cancellationToken)
    {
        await DrainAsync(stream, cancellationToken).ConfigureAwait(false);
        await SendDeterministicAsync(stream, ReplyAfterEofSeed, ReplyAfterEofLength, cancellationToken).ConfigureAwait(false);
        socket.Shutdown(SocketShutdown.Send);
    }

    public static async Task Sha256SinkAsync(NetworkStream stream, Socket socket, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[BufferSize];
        int read;
        while ((read = await stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
        {
            hash.AppendData(buffer, 0, read);
        }

        await stream.WriteAsync(hash.GetHashAndReset(), cancellationToken).ConfigureAwait(false);
        socket.Shutdown(SocketShutdown.Send);
    }

    public static async Task SourceAsync(NetworkStream stream, Socket socket, CancellationToken cancellationToken)
    {
        var request = new byte[16];
        await stream.ReadExactlyAsync(request, cancellationToken).ConfigureAwait(false);
        var length = BinaryPrimitives.ReadInt64LittleEndian(request);
        var seed = BinaryPrimitives.ReadUInt64LittleEndian(request.AsSpan(8));
        await SendDeterministicAsync(stream, seed, length, cancellationToken).ConfigureAwait(false);
        socket.Shutdown(SocketShutdown.Send);
        await DrainAsync(stream, cancellationToken).ConfigureAwait(false);
    }

    public static byte[] SourceRequest(long length, ulong seed)
    {
        var request = new byte[16];
        BinaryPrimitives.WriteInt64LittleEndian(request, length);
        BinaryPrimitives.WriteUInt64LittleEndian(request.AsSpan(8), seed);
        return request;
    }

    public static async Task<long> DrainAsync(Stream stream, CancellationToken cancellationToken)
    {
        var buffer = new byte[BufferSize];
        long total = 0;
        int read;
        while ((read = await stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
        {
            total += read;
        }

        return total;
    }

    public static async Task SendDeterministicAsync(Stream stream, ulong seed, long length, CancellationToken cancellationToken)
    {
        var source = new DeterministicBytes(seed);
        var buffer = new byte[BufferSize];
        while (length > 0)
        {
            var count = (int)Math.Min(buffer.Length, length);
            source.Fill(buffer.AsSpan(0, count));
            await stream.WriteAsync(buffer.AsMemory(0, count), cancellationToken).ConfigureAwait(false);
            length -= count;
        }
    }
}
