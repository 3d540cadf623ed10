using System.Buffers;
using System.Net;
using BenchmarkDotNet.Attributes;
using Egress.Tunnel;

namespace Egress.Benchmarks;

/// <summary>The per-connection tunnel header: request and response, encoded and decoded.</summary>
[MemoryDiagnoser]
public class TunnelCodecBenchmarks
{
    private readonly byte[] _buffer = new byte[TunnelCodec.MaxRequestLength];
    private TunnelRequest _request;
    private TunnelRequest _hintedRequest;
    private ReadOnlySequence<byte> _encodedRequest;
    private ReadOnlySequence<byte> _encodedHintedRequest;
    private ReadOnlySequence<byte> _encodedResponse;

    [GlobalSetup]
    public void Setup()
    {
        _request = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("198.18.0.10"), 443));
        _hintedRequest = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("93.184.215.14"), 443), "api.egress.test");
        _encodedRequest = Encode(_request);
        _encodedHintedRequest = Encode(_hintedRequest);
        byte[] response = new byte[TunnelCodec.MaxResponseLength];
        int length = TunnelCodec.WriteResponse(new TunnelResponse(TunnelStatus.Ok), response);
        _encodedResponse = new ReadOnlySequence<byte>(response, 0, length);
    }

    [Benchmark(Description = "TunnelCodec.WriteRequest (no hint)")]
    public int WriteRequest() => TunnelCodec.WriteRequest(_request, _buffer);

    [Benchmark(Description = "TunnelCodec.WriteRequest (host hint)")]
    public int WriteRequestWithHint() => TunnelCodec.WriteRequest(_hintedRequest, _buffer);

    [Benchmark(Description = "TunnelCodec.TryReadRequest (no hint)")]
    public int TryReadRequest()
    {
        ReadOnlySequence<byte> buffer = _encodedRequest;
        return (int)TunnelCodec.TryReadRequest(ref buffer, out _); // the enum as int: benchmark methods are public, the codec is internal
    }

    [Benchmark(Description = "TunnelCodec.TryReadRequest (host hint)")]
    public int TryReadRequestWithHint()
    {
        ReadOnlySequence<byte> buffer = _encodedHintedRequest;
        return (int)TunnelCodec.TryReadRequest(ref buffer, out _); // the enum as int: benchmark methods are public, the codec is internal
    }

    [Benchmark(Description = "TunnelCodec.WriteResponse (Ok)")]
    public int WriteResponse() => TunnelCodec.WriteResponse(new TunnelResponse(TunnelStatus.Ok), _buffer);

    [Benchmark(Description = "TunnelCodec.TryReadResponse (Ok)")]
    public int TryReadResponse()
    {
        ReadOnlySequence<byte> buffer = _encodedResponse;
        return (int)TunnelCodec.TryReadResponse(ref buffer, out _);
    }

    private static ReadOnlySequence<byte> Encode(in TunnelRequest request)
    {
        byte[] bytes = new byte[TunnelCodec.MaxRequestLength];
        int length = TunnelCodec.WriteRequest(request, bytes);
        return new ReadOnlySequence<byte>(bytes, 0, length);
    }
}
