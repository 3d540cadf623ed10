using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// A plain TCP client whose socket is created inside a namespace (e.g. the enclave), talking to the world servers.
/// Inside the enclave its connections go through the iptables DNAT exactly like curl's.
/// </summary>
internal static class TransferClient
{
    private const int BufferSize = 64 * 1024;

    /// <summary>Sends <paramref name="request"/>, half-closes, and hashes everything received until EOF.</summary>
    public static async Task<(long Length, byte[] Sha256)> HalfCloseThenReceiveAsync(
        string namespaceName, IPEndPoint destination, byte[] request, CancellationToken cancellationToken)
    {
        using var socket = await NetworkNamespace.ConnectAsync(namespaceName, destination, cancellationToken).ConfigureAwait(false);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync(request, cancellationToken).ConfigureAwait(false);
        socket.Shutdown(SocketShutdown.Send);
        return await HashUntilEofAsync(stream, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Uploads <paramref name="length"/> seeded bytes to the SHA-256 sink; returns its whole answer (the hash it computed).</summary>
    public static async Task<byte[]> UploadAsync(
        string namespaceName, IPEndPoint sink, ulong seed, long length, CancellationToken cancellationToken)
    {
        using var socket = await NetworkNamespace.ConnectAsync(namespaceName, sink, cancellationToken).ConfigureAwait(false);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await ServerBehaviours.SendDeterministicAsync(stream, seed, length, cancellationToken).ConfigureAwait(false);
        socket.Shutdown(SocketShutdown.Send);
        using var answer = new MemoryStream();
        await stream.CopyToAsync(answer, cancellationToken).ConfigureAwait(false);
        return answer.ToArray();
    }

    /// <summary>Asks the source for <paramref name="length"/> seeded bytes; returns what arrived (length and hash).</summary>
    public static Task<(long Length, byte[] Sha256)> DownloadAsync(
        string namespaceName, IPEndPoint source, ulong seed, long length, CancellationToken cancellationToken) =>
        HalfCloseThenReceiveAsync(namespaceName, source, ServerBehaviours.SourceRequest(length, seed), cancellationToken);

    private static async Task<(long Length, byte[] Sha256)> HashUntilEofAsync(Stream stream, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[BufferSize];
        long total = 0;
        int read;
        while ((read = await stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
        {
            hash.AppendData(buffer, 0, read);
            total += read;
        }

        return (total, hash.GetHashAndReset());
    }
}
