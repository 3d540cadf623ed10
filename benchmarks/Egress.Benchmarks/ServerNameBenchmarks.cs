using BenchmarkDotNet.Attributes;
using Egress.Relay;
using Egress.Tls;

namespace Egress.Benchmarks;

/// <summary>
/// What the TLS server-name check adds to a connection to a learned address: parsing the captured ClientHellos
/// (fuzz/corpus/tls-client-hello) and the whole gate (buffer, parse, decision, copy of the bytes to relay), against the
/// gate's "off" baseline of handing the first receive on as it is.
/// </summary>
[MemoryDiagnoser]
public class ServerNameBenchmarks
{
    private byte[] _openSsl = [];
    private byte[] _postQuantum = [];
    private readonly ServerNameGate _gate = ServerNameGate.Create(TlsServerNameMode.Require, ["www.allowed.test"], static _ => true);

    [GlobalSetup]
    public void Setup()
    {
        string folder = CorpusFolder();
        _openSsl = File.ReadAllBytes(Path.Combine(folder, "openssl-s_client-www.allowed.test"));
        _postQuantum = File.ReadAllBytes(Path.Combine(folder, "pq-x25519mlkem768-www.allowed.test"));
    }

    [Benchmark(Description = "ClientHelloParser.Parse (OpenSSL 3.0, 322 B, 1 record)")]
    public int ParseOpenSsl() => (int)ClientHelloParser.Parse(_openSsl, out _);

    [Benchmark(Description = "ClientHelloParser.Parse (X25519MLKEM768, 1579 B, 2 records)")]
    public int ParsePostQuantum() => (int)ClientHelloParser.Parse(_postQuantum, out _);

    [Benchmark(Description = "ServerNameGate.InspectAsync (OpenSSL 3.0 ClientHello, one receive)")]
    public int Gate()
    {
        byte[] source = _openSsl;
        FirstBytes first = _gate.InspectAsync(
            (buffer, _) =>
            {
                source.CopyTo(buffer);
                return ValueTask.FromResult(source.Length);
            },
            CancellationToken.None).AsTask().GetAwaiter().GetResult();
        return first.Received.Length;
    }

    private static string CorpusFolder()
    {
        for (DirectoryInfo? directory = new(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            string folder = Path.Combine(directory.FullName, "fuzz", "corpus", "tls-client-hello");
            if (Directory.Exists(folder))
            {
                return folder;
            }
        }

        throw new InvalidOperationException("fuzz/corpus/tls-client-hello not found above the benchmark directory.");
    }
}
