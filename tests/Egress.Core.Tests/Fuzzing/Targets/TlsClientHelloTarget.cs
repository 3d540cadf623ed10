using Egress.Relay;
using Egress.Tls;
using static Egress.Fuzzing.FuzzInvariantException;

namespace Egress.Fuzzing;

/// <summary>
/// A connection's first client bytes, as both hosts read them before a connection to a learned address may send on:
/// <see cref="ClientHelloParser.Parse(ReadOnlySpan{byte}, out ClientHello)"/> and the <see cref="ServerNameGate"/> around it. The contract: no exception;
/// not TLS exactly when the first byte is not 22 (or, with its high bit set, when the third is not 1: an SSL 2.0-format ClientHello); a server name read is a valid lower-case DNS name; every prefix of
/// the input either needs more or decides the same (so however TCP splits the bytes, the decision is one); and the
/// gate, fed the input a few bytes at a time, decides what <see cref="ServerNameCheck"/> decides for the whole and
/// hands on exactly a prefix of the input.
/// </summary>
internal static class TlsClientHelloTarget
{
    private static readonly string[] LearnedNames = ["www.allowed.test"];

    public static FuzzVerdict Run(byte[] input)
    {
        ClientHelloStatus status = ClientHelloParser.Parse(input, out ClientHello hello);
        Require(Enum.IsDefined(status), $"undefined status {status}");
        if (input.Length > 0 && (input[0] & 0x80) != 0)
        {
            // An SSL 2.0-format CLIENT-HELLO (RFC 5246 E.2) when its third byte is 1; else not TLS.
            ClientHelloStatus ssl2 = input.Length < 3 ? ClientHelloStatus.NeedMore : input[2] == 1 ? ClientHelloStatus.ClientHello : ClientHelloStatus.NotTls;
            Require(status == ssl2 && (status != ClientHelloStatus.ClientHello || hello == new ClientHello(null, false)), $"an SSL 2.0-format first byte decides {status}");
        }
        else
        {
            // Not TLS: a first byte that is no TLS record type (20 to 25), or one other than handshake (22) that no server
            // takes for a first record: not followed by major version 3, and not a 2-byte alert of a version below 0x1000
            // (which Go's crypto/tls skips).
            bool goAlert = input.Length > 1 && input[0] == 21 && input[1] < 0x10 && (input.Length < 5 || ((input[3] << 8) | input[4]) == 2);
            bool notTls = input.Length > 0 && (input[0] is < 20 or > 25 || (input[0] != 22 && input.Length > 1 && input[1] != 3 && !goAlert));
            Require((status == ClientHelloStatus.NotTls) == notTls, "not-TLS does not follow the first bytes");
        }
        if (status != ClientHelloStatus.ClientHello)
        {
            Require(hello == default, "a result without a ClientHello carries one");
        }
        else if (hello.ServerName is { } name)
        {
            Require(name.Length is > 0 and <= 253 && !name.EndsWith('.') && !name.StartsWith('.') && !name.Contains("..", StringComparison.Ordinal), $"server name '{name}' is not a DNS name");
            Require(name.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-' or '_' or '.'), $"server name '{name}' has a character outside lower-case LDH");
        }

        for (int cut = 0; cut < input.Length; cut += Math.Max(1, input.Length / 16))
        {
            ClientHelloStatus partial = ClientHelloParser.Parse(input.AsSpan(0, cut), out ClientHello partialHello);
            Require(partial == ClientHelloStatus.NeedMore || (partial == status && partialHello == hello), $"the first {cut} bytes decide {partial}, all {input.Length} decide {status}");
        }

        CheckGate(input);
        return status == ClientHelloStatus.ClientHello ? FuzzVerdict.Accepted : FuzzVerdict.Rejected;
    }

    private static void CheckGate(byte[] input)
    {
        int seen = Math.Min(input.Length, ClientHelloParser.MaxBytes);
        ClientHelloStatus status = ClientHelloParser.Parse(input.AsSpan(0, seen), out ClientHello hello);
        if (status == ClientHelloStatus.NeedMore && seen == ClientHelloParser.MaxBytes)
        {
            status = ClientHelloStatus.TooLarge;
        }

        ServerNameRefusal expected = input.Length == 0 ? ServerNameRefusal.None
            : ServerNameCheck.Decide(TlsServerNameMode.Require, status, hello, LearnedNames, static _ => true);
        var gate = ServerNameGate.Create(TlsServerNameMode.Require, LearnedNames, static _ => true);
        int offset = 0;
        int chunk = 1 + (input.Length % 7);
        FirstBytes first = gate.InspectAsync(
            (buffer, _) =>
            {
                int count = Math.Min(Math.Min(chunk, buffer.Length), input.Length - offset);
                input.AsSpan(offset, count).CopyTo(buffer.Span);
                offset += count;
                return ValueTask.FromResult(count);
            },
            CancellationToken.None).AsTask().GetAwaiter().GetResult();
        Require(gate.Refusal == expected, $"the gate refused with {gate.Refusal}, the check decides {expected}");
        Require(first.Allowed == (expected == ServerNameRefusal.None), "the gate's answer disagrees with its refusal");
        Require(!first.Allowed || first.Received.Span.SequenceEqual(input.AsSpan(0, first.Received.Length)), "the gate hands on other bytes than it received");
        Require(!first.Allowed || first.Received.Length == offset, "the gate kept back bytes it received");
    }
}
