using System.Text;
using BenchmarkDotNet.Attributes;
using Egress.Dns;
using Egress.Dns.Wire;

namespace Egress.Benchmarks;

/// <summary>The DNS forwarder's per-query parsing of the question.</summary>
[MemoryDiagnoser]
public class DnsBenchmarks
{
    private readonly char[] _name = new char[DnsMessage.MaxNameLength];
    private byte[] _query = null!;

    [GlobalSetup]
    public void Setup()
    {
        var query = new List<byte> { 0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0 };
        foreach (string label in "www.api.bench.egress.test".Split('.'))
        {
            query.Add((byte)label.Length);
            query.AddRange(Encoding.ASCII.GetBytes(label));
        }

        query.AddRange([0, 0, 1, 0, 1]);
        _query = [.. query];
        if (DnsMessage.TryReadQuestionName(_query, _name, out int written) != DnsParseError.None || written != 25)
        {
            throw new InvalidOperationException("the benchmark query does not parse");
        }
    }

    [Benchmark(Description = "DnsMessage.TryReadQuestionName")]
    public int TryReadQuestionName()
    {
        DnsMessage.TryReadQuestionName(_query, _name, out int written);
        return written;
    }

    [Benchmark(Description = "DnsMessage.TryParseQuestion")]
    public string TryParseQuestion()
    {
        DnsMessage.TryParseQuestion(_query, out DnsQuestion question, out _);
        return question.Name; // the parsed name (already allocated by the parse): benchmark methods are public, DnsQuestion is internal
    }
}
