using System.Buffers.Binary;
using System.Text;
using System.Threading.Tasks.Sources;
using BenchmarkDotNet.Attributes;
using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Policy;
using Microsoft.Extensions.Logging.Abstractions;

namespace Egress.Benchmarks;

/// <summary>
/// The DNS learning work per answer (<see cref="DnsAnswerLearner.Learn"/>: parse the answer's A records, insert each
/// into the <see cref="AllowlistCache"/>), which runs wherever the answer's completion runs: on the parent, inline on
/// the upstream UDP socket's receive continuation, i.e. on the socket engine's I/O thread when the hosts turn inline
/// completions on. Compared with handing the same work to the thread pool and waiting for it (the cost of moving it
/// off that thread), and with the hop alone.
/// </summary>
[MemoryDiagnoser]
public class DnsLearningBenchmarks
{
    private const string Name = "www.api.bench.egress.test";

    private readonly HopSource _hop = new();
    private readonly List<DnsAddressRecord> _records = [];
    private byte[] _answer = null!;
    private EgressPolicy _policy = null!;

    /// <summary>Gets or sets the A records in the answer.</summary>
    [Params(1, 4, 16)]
    public int Addresses { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _policy = EgressPolicy.Create(enabled: true, ["*.bench.egress.test"], new AllowlistCache());
        _answer = Answer(Name, Addresses);
        int learned = DnsAnswerLearner.Learn(_policy, Name, _answer, NullLogger.Instance);
        if (learned != Addresses)
        {
            throw new InvalidOperationException($"the benchmark answer taught {learned} of {Addresses} addresses");
        }
    }

    [Benchmark(Baseline = true, Description = "Learn inline (as on the I/O thread)")]
    public int LearnInline() => DnsAnswerLearner.Learn(_policy, Name, _answer, NullLogger.Instance);

    [Benchmark(Description = "parse only (DnsMessage.ExtractAddresses)")]
    public int ParseOnly()
    {
        _records.Clear();
        DnsMessage.ExtractAddresses(_answer, _records);
        return _records.Count;
    }

    [Benchmark(Description = "Learn on the thread pool, awaited")]
    public ValueTask<int> LearnOnThreadPool() => _hop.Run(this, learn: true);

    [Benchmark(Description = "thread-pool hop alone, awaited")]
    public ValueTask<int> HopOnly() => _hop.Run(this, learn: false);

    /// <summary>A response to an A query for <paramref name="name"/> with <paramref name="count"/> public addresses.</summary>
    private static byte[] Answer(string name, int count)
    {
        var bytes = new List<byte> { 0x12, 0x34, 0x81, 0x80, 0, 1, (byte)(count >> 8), (byte)count, 0, 0, 0, 0 };
        foreach (string label in name.Split('.'))
        {
            bytes.Add((byte)label.Length);
            bytes.AddRange(Encoding.ASCII.GetBytes(label));
        }

        bytes.AddRange([0, 0, 1, 0, 1]);
        for (int i = 0; i < count; i++)
        {
            byte[] record = new byte[16];
            BinaryPrimitives.WriteUInt16BigEndian(record, 0xC00C); // the question's name
            BinaryPrimitives.WriteUInt16BigEndian(record.AsSpan(2), 1); // A
            BinaryPrimitives.WriteUInt16BigEndian(record.AsSpan(4), 1); // IN
            BinaryPrimitives.WriteUInt32BigEndian(record.AsSpan(6), 300);
            BinaryPrimitives.WriteUInt16BigEndian(record.AsSpan(10), 4);
            record[12] = 93;
            record[13] = 184;
            record[14] = 215;
            record[15] = (byte)(i + 1);
            bytes.AddRange(record);
        }

        return [.. bytes];
    }

    /// <summary>Queues one work item and completes a pooled awaitable from it: the cheapest way off the I/O thread.</summary>
    private sealed class HopSource : IValueTaskSource<int>, IThreadPoolWorkItem
    {
        private ManualResetValueTaskSourceCore<int> _core = new() { RunContinuationsAsynchronously = false };
        private DnsLearningBenchmarks _owner = null!;
        private bool _learn;

        public ValueTask<int> Run(DnsLearningBenchmarks owner, bool learn)
        {
            _core.Reset();
            _owner = owner;
            _learn = learn;
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
            return new ValueTask<int>(this, _core.Version);
        }

        public void Execute() => _core.SetResult(_learn ? _owner.LearnInline() : 0);

        public int GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}
