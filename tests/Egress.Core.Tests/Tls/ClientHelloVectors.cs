using System.Buffers.Binary;

namespace Egress.Tests.Tls;

/// <summary>ClientHellos for the tests: the ones captured from OpenSSL 3.0 s_client and curl (fuzz/corpus/tls-client-hello),
/// and records cut from a handshake message at any size.</summary>
internal static class ClientHelloVectors
{
    private static readonly string Folder = FindFolder();

    /// <summary>A file of fuzz/corpus/tls-client-hello, e.g. <c>openssl-s_client-www.allowed.test</c>.</summary>
    public static byte[] Read(string name) => File.ReadAllBytes(Path.Combine(Folder, name));

    /// <summary>The names of every file of fuzz/corpus/tls-client-hello.</summary>
    public static IEnumerable<string> Names => Directory.GetFiles(Folder).Select(path => Path.GetFileName(path)).Order(StringComparer.Ordinal);

    /// <summary>The handshake message carried by <paramref name="records"/> (the fragments joined).</summary>
    public static byte[] Handshake(byte[] records)
    {
        var joined = new List<byte>();
        for (int offset = 0; offset + 5 <= records.Length;)
        {
            int length = BinaryPrimitives.ReadUInt16BigEndian(records.AsSpan(offset + 3));
            joined.AddRange(records.AsSpan(offset + 5, length).ToArray());
            offset += 5 + length;
        }

        return [.. joined];
    }

    /// <summary><paramref name="handshake"/> in handshake records of at most <paramref name="size"/> bytes each.</summary>
    public static byte[] Records(byte[] handshake, int size)
    {
        var records = new List<byte>();
        for (int offset = 0; offset < handshake.Length; offset += size)
        {
            int length = Math.Min(size, handshake.Length - offset);
            records.AddRange([22, 3, 1, (byte)(length >> 8), (byte)length]);
            records.AddRange(handshake.AsSpan(offset, length).ToArray());
        }

        return [.. records];
    }

    /// <summary>A minimal ClientHello (TLS 1.2 shape) with these extensions, as one record.</summary>
    public static byte[] WithExtensions(params (ushort Type, byte[] Data)[] extensions)
    {
        var body = new List<byte> { 3, 3 };
        body.AddRange(new byte[32]);
        body.Add(0); // session id
        body.AddRange([0, 2, 0x13, 0x01]); // one cipher suite
        body.AddRange([1, 0]); // null compression
        var block = new List<byte>();
        foreach (var (type, data) in extensions)
        {
            block.AddRange([(byte)(type >> 8), (byte)type, (byte)(data.Length >> 8), (byte)data.Length]);
            block.AddRange(data);
        }

        body.AddRange([(byte)(block.Count >> 8), (byte)block.Count]);
        body.AddRange(block);
        byte[] handshake = [1, (byte)(body.Count >> 16), (byte)(body.Count >> 8), (byte)body.Count, .. body];
        return Records(handshake, 16384);
    }

    /// <summary>The data of a server_name extension with one host_name (bytes as given, so invalid ones can be built).</summary>
    public static byte[] ServerName(byte[] name)
    {
        int entry = 3 + name.Length;
        return [(byte)(entry >> 8), (byte)entry, 0, (byte)(name.Length >> 8), (byte)name.Length, .. name];
    }

    private static string FindFolder()
    {
        for (DirectoryInfo? directory = new(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            string folder = Path.Combine(directory.FullName, "fuzz", "corpus", "tls-client-hello");
            if (File.Exists(Path.Combine(directory.FullName, "Egress.sln")) && Directory.Exists(folder))
            {
                return folder;
            }
        }

        throw new InvalidOperationException("fuzz/corpus/tls-client-hello not found above the test directory.");
    }
}
