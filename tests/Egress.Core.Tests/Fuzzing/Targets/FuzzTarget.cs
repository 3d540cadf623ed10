namespace Egress.Fuzzing;

/// <summary>What a parser made of one fuzz input.</summary>
internal enum FuzzVerdict
{
    /// <summary>The parser accepted the input (a request, a message, a frame, a configuration).</summary>
    Accepted,

    /// <summary>The parser rejected the input the way its contract says (an error result or a documented exception).</summary>
    Rejected,
}

/// <summary>
/// One parser of untrusted bytes under fuzzing. It returns normally when the parser kept its contract, and throws
/// otherwise: a <see cref="FuzzInvariantException"/> for a broken invariant, or whatever undocumented exception the
/// parser threw. afl-fuzz (through SharpFuzz) records every such throw as a crash; the corpus replay fails on it.
/// </summary>
/// <param name="Name">The name fuzz/run.sh and fuzz/corpus/&lt;name&gt; use.</param>
/// <param name="Parser">What the target feeds the input to, for docs/fuzzing.md and test names.</param>
/// <param name="Run">Feeds one input to the parser and checks its contract.</param>
internal sealed record FuzzTarget(string Name, string Parser, Func<byte[], FuzzVerdict> Run)
{
    /// <summary>Every target, by name: the one list fuzz/run.sh, the harness and the corpus replay use.</summary>
    public static IReadOnlyList<FuzzTarget> All { get; } =
    [
        new("tunnel", "TunnelCodec.TryReadRequest/TryReadResponse/ReadRequestAsync/ReadResponseAsync", TunnelCodecTarget.Run),
        new("tunnel-frames", "TunnelFrames.TryReadHeader over a v2 stream direction (DATA payloads, END cause)", TunnelFramesTarget.Run),
        new("denial-report", "DenialReportCodec.TryReadRecord over a denial report's payload (records until the end byte)", DenialReportTarget.Run),
        new("dns-query", "DnsMessage.TryParseQuestion/TryReadQuestionName, DnsEdns.Read, DnsScreening.Screen, error answers", DnsQueryTarget.Run),
        new("dns-response", "DnsMessage.ExtractAddresses, DnsForwarding.WriteTruncated/IsAnswerTo", DnsResponseTarget.Run),
        new("dns-framing", "DnsTcpFraming.TryReadMessage, DnsFrameReader.ReadAsync", DnsFramingTarget.Run),
        new("config", "EgressConfiguration.Parse (ConfigurationReader over Tomlyn)", ConfigurationTarget.Run),
        new("tls-client-hello", "ClientHelloParser.Parse, ServerNameGate.InspectAsync", TlsClientHelloTarget.Run),
        new("learned-addresses", "LearnedAddressesFile.Read, restoring through EgressPolicy.Restore", LearnedAddressesTarget.Run),
    ];

    /// <summary>Finds a target by name.</summary>
    /// <returns>The target, or null when no target has that name.</returns>
    public static FuzzTarget? Find(string name) => All.FirstOrDefault(target => target.Name == name);
}

/// <summary>A parser broke an invariant of its contract: a crash for the fuzzer.</summary>
internal sealed class FuzzInvariantException(string message) : Exception(message)
{
    /// <summary>Throws when <paramref name="condition"/> is false.</summary>
    /// <exception cref="FuzzInvariantException"><paramref name="condition"/> is false.</exception>
    public static void Require(bool condition, string invariant)
    {
        if (!condition)
        {
            throw new FuzzInvariantException(invariant);
        }
    }
}
