using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Egress.Dns;
using Egress.Dns.Wire;

namespace Egress.Tests.Dns;

/// <summary>A record a <see cref="FakeUpstreamDns"/> answers: A/AAAA data is an address, CNAME data a name, any other
/// type's data its bytes (ASCII); with <paramref name="Raw"/>, any type's data is its bytes as given (an A record of
/// five bytes, say).</summary>
internal readonly record struct FakeRecord(string Owner, ushort Type, string Data, uint Ttl = 300, bool Raw = false)
{
    public static FakeRecord A(string owner, string address, uint ttl = 300) => new(owner, 1, address, ttl);

    public static FakeRecord Aaaa(string owner, string address, uint ttl = 300) => new(owner, 28, address, ttl);

    public static FakeRecord Cname(string owner, string target, uint ttl = 300) => new(owner, 5, target, ttl);
}

/// <summary>What a <see cref="FakeUpstreamDns"/> does with a question; with <paramref name="OtherType"/> the answer's
/// question has another type (A for AAAA, else AAAA), as from an upstream that rewrites questions.</summary>
internal sealed record FakeAnswer(IReadOnlyList<FakeRecord> Records, int Rcode = 0, bool Silent = false, bool SpoofFirst = false, bool OtherType = false)
{
    public static FakeAnswer Silence { get; } = new([], Silent: true);

    public static FakeAnswer Of(params FakeRecord[] records) => new(records);
}

/// <summary>A query a <see cref="FakeUpstreamDns"/> received.</summary>
internal readonly record struct FakeQuery(string Name, ushort Type, bool Tcp);

/// <summary>
/// A tiny authoritative-style DNS server on 127.0.0.1 (UDP and TCP on the same random port) answering from a
/// function, as a real upstream would: the question echoed, records uncompressed, UDP answers over the client's
/// limit (512, or its EDNS size) truncated to the question with TC=1. Records every query and every answer sent.
/// </summary>
internal sealed class FakeUpstreamDns : IAsyncDisposable
{
    private readonly Func<string, ushort, FakeAnswer> _answer;
    private readonly Socket _udp;
    private readonly Socket _tcp;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _udpLoop;
    private readonly Task _tcpLoop;

    public FakeUpstreamDns(Func<string, ushort, FakeAnswer> answer)
    {
        _answer = answer;
        (_udp, _tcp) = BindPair();
        EndPoint = (IPEndPoint)_udp.LocalEndPoint!;
        _udpLoop = Task.Run(UdpLoopAsync);
        _tcpLoop = Task.Run(TcpLoopAsync);
    }

    public IPEndPoint EndPoint { get; }

    public ConcurrentQueue<FakeQuery> Queries { get; } = new();

    /// <summary>The bytes of every query received, in order.</summary>
    public ConcurrentQueue<byte[]> QueryBytes { get; } = new();

    /// <summary>The full answers built (before any UDP truncation), in order.</summary>
    public ConcurrentQueue<byte[]> Answers { get; } = new();

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _udp.Dispose();
        _tcp.Dispose();
        await Task.WhenAll(_udpLoop, _tcpLoop);
        _stop.Dispose();
    }

    /// <summary>Builds the answer to <paramref name="query"/> (null: stay silent), recording the query.</summary>
    private byte[]? Respond(ReadOnlySpan<byte> query, bool tcp, out bool spoofFirst)
    {
        spoofFirst = false;
        if (DnsMessage.TryParseQuestion(query, out DnsQuestion question, out int questionEnd) != DnsParseError.None)
        {
            return null;
        }

        Queries.Enqueue(new FakeQuery(question.Name, question.Type, tcp));
        QueryBytes.Enqueue(query.ToArray());
        FakeAnswer answer = _answer(question.Name.ToLowerInvariant(), question.Type);
        if (answer.Silent)
        {
            return null;
        }

        spoofFirst = answer.SpoofFirst;
        var builder = new DnsMessageBuilder()
            .Header(DnsMessage.ReadId(query), (ushort)(0x8180 | answer.Rcode), 1, (ushort)answer.Records.Count, 0, 0)
            .Bytes(query[DnsHeader.Length..questionEnd].ToArray());
        foreach (FakeRecord record in answer.Records)
        {
            builder = record.Type switch
            {
                _ when record.Raw => builder.Name(record.Owner).Fixed(record.Type, record.Ttl, (ushort)record.Data.Length).Bytes(System.Text.Encoding.Latin1.GetBytes(record.Data)),
                1 => builder.A(record.Owner, record.Data, record.Ttl),
                28 => builder.Aaaa(record.Owner, record.Data, record.Ttl),
                5 => builder.Cname(record.Owner, record.Data, record.Ttl),
                _ => builder.Name(record.Owner).Fixed(record.Type, record.Ttl, (ushort)record.Data.Length).Bytes(System.Text.Encoding.ASCII.GetBytes(record.Data)),
            };
        }

        byte[] bytes = builder.ToArray();
        if (answer.OtherType)
        {
            BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(questionEnd - 4), question.Type == 28 ? (ushort)1 : (ushort)28);
        }

        Answers.Enqueue(bytes);
        if (!tcp && bytes.Length > DnsForwarding.ClientUdpLimit(query, questionEnd))
        {
            byte[] truncated = bytes[..(questionEnd)];
            BinaryPrimitives.WriteUInt16BigEndian(truncated.AsSpan(2), 0x8180 | 0x0200);
            BinaryPrimitives.WriteUInt16BigEndian(truncated.AsSpan(6), 0);
            return truncated;
        }

        return bytes;
    }

    private async Task UdpLoopAsync()
    {
        byte[] buffer = new byte[65536];
        while (!_stop.IsCancellationRequested)
        {
            var from = new SocketAddress(AddressFamily.InterNetwork);
            int received;
            try
            {
                received = await _udp.ReceiveFromAsync(buffer, SocketFlags.None, from, _stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested)
                {
                    return;
                }

                continue;
            }

            byte[]? response = Respond(buffer.AsSpan(0, received), tcp: false, out bool spoofFirst);
            if (response is null)
            {
                continue;
            }

            try
            {
                if (spoofFirst)
                {
                    // Same source, wrong ID, poisonous address: a forwarder that checks IDs ignores it.
                    byte[] spoof = (byte[])response.Clone();
                    DnsMessage.WriteId(spoof, (ushort)(DnsMessage.ReadId(spoof) ^ 0x5A5A));
                    spoof.AsSpan(spoof.Length - 4).Fill(6);
                    await _udp.SendToAsync(spoof, SocketFlags.None, from);
                }

                await _udp.SendToAsync(response, SocketFlags.None, from);
            }
            catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
            {
            }
        }
    }

    private async Task TcpLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _tcp.AcceptAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            _ = ServeTcpAsync(client);
        }
    }

    private async Task ServeTcpAsync(Socket client)
    {
        using (client)
        {
            byte[] prefix = new byte[2];
            try
            {
                while (await ReadExactlyAsync(client, prefix))
                {
                    byte[] query = new byte[BinaryPrimitives.ReadUInt16BigEndian(prefix)];
                    if (!await ReadExactlyAsync(client, query))
                    {
                        return;
                    }

                    byte[]? response = Respond(query, tcp: true, out _);
                    if (response is not null)
                    {
                        byte[] frame = new byte[response.Length + 2];
                        DnsTcpFraming.WriteMessage(response, frame);
                        await client.SendAsync(frame, SocketFlags.None);
                    }
                }
            }
            catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
            {
            }
        }
    }

    private static async Task<bool> ReadExactlyAsync(Socket socket, byte[] buffer)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None);
            if (n == 0)
            {
                return false;
            }

            read += n;
        }

        return true;
    }

    private static (Socket Udp, Socket Tcp) BindPair()
    {
        for (int attempt = 0; ; attempt++)
        {
            var udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            udp.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                tcp.Bind(udp.LocalEndPoint!);
                tcp.Listen(64);
                return (udp, tcp);
            }
            catch (SocketException) when (attempt < 10)
            {
                udp.Dispose();
                tcp.Dispose();
            }
        }
    }
}
