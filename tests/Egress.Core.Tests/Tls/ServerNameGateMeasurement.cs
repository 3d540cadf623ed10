using System.Diagnostics;
using System.Net.Sockets;
using Egress.Relay;
using Egress.Tests.Relay;
using Egress.Tls;

namespace Egress.Tests.Tls;

/// <summary>
/// Prints what the server-name gate costs the socket relay, with the gate off and on in the same run, rounds
/// interleaved (client ⇄ relay ⇄ server over loopback TCP, in process: no namespaces, DNAT or tunnel). A measurement,
/// not a check: run explicitly.
/// </summary>
public sealed class ServerNameGateMeasurement
{
    private static readonly byte[] ClientHello = ClientHelloVectors.Read("openssl-s_client-www.allowed.test");

    [Test]
    [Explicit("measurement; prints connections/s and MB/s with the gate off and on")]
    public async Task GateOffAndOnInTheSameRun()
    {
        const int Connections = 1000;
        const long Bytes = 512L << 20;
        var rates = new Dictionary<bool, List<double>> { [false] = [], [true] = [] };
        var throughputs = new Dictionary<bool, List<double>> { [false] = [], [true] = [] };
        await ConnectionRateAsync(gated: false, 200); // warm-up
        await ConnectionRateAsync(gated: true, 200);
        for (int round = 0; round < 7; round++)
        {
            foreach (bool gated in new[] { false, true })
            {
                rates[gated].Add(await ConnectionRateAsync(gated, Connections));
                throughputs[gated].Add(await ThroughputAsync(gated, Bytes));
            }
        }

        foreach (bool gated in new[] { false, true })
        {
            await TestContext.Out.WriteLineAsync(
                $"gate {(gated ? "on " : "off")}: {Median(rates[gated]):F0} connections/s (ClientHello, 1-byte answer, close; rounds {string.Join(", ", rates[gated].Select(r => r.ToString("F0")))}), "
                + $"{Median(throughputs[gated]):F0} MB/s (ClientHello then 512 MiB; rounds {string.Join(", ", throughputs[gated].Select(t => t.ToString("F0")))})");
        }

        Assert.That(rates[true], Has.All.GreaterThan(0));
    }

    /// <summary>A red-team trial's stream, on the parent's side: a ClientHello that never completes, in 1-byte TLS
    /// records, until the gate refuses it as too large; each record byte in a 1-byte DATA frame of its own (164 KB of
    /// tunnel bytes), and, in the same run, all of them in one frame. Prints the process's CPU time per stream (the
    /// trial measured 0.08-0.33 CPU-s each on egress-host when each frame was handed over, and parsed from the first
    /// record, alone).</summary>
    [Test]
    [Explicit("measurement; prints CPU ms per stream of 1-byte records, in 1-byte DATA frames and in one")]
    public async Task AClientHelloInOneByteRecordsOnTheParentsSide()
    {
        byte[] handshake = [1, 0, 0x3E, 0x80, 3, 3, .. Enumerable.Repeat((byte)'A', 20_000)];
        byte[] records = [.. Enumerable.Range(0, 5462).SelectMany(i => new byte[] { 22, 3, 1, 0, 1, handshake[i] })];
        var ways = new Dictionary<string, byte[]>
        {
            ["a DATA frame per byte"] = [.. records.SelectMany(b => Frames.Data([b]))],
            ["one DATA frame"] = Frames.Data(records),
        };
        const int Streams = 16;
        var cpu = ways.Keys.ToDictionary(k => k, _ => new List<double>());
        for (int i = 0; i < Streams + 2; i++)
        {
            foreach (var (way, frames) in ways)
            {
                using var tunnel = await SocketPair.ConnectAsync(SocketTransport.Unix);
                using var plain = await SocketPair.ConnectAsync(SocketTransport.Tcp);
                var gate = ServerNameGate.Create(TlsServerNameMode.Require, ["www.allowed.test"], static _ => true);
                TimeSpan before = Process.GetCurrentProcess().TotalProcessorTime;
                Task<RelayResult> relay = SocketRelay.RunFramedAsync(tunnel.Right, plain.Left, RelaySide.A, default, default, RelayOptions.Default, gate, CancellationToken.None);
                Task sending = tunnel.Left.SendAsync(frames).ContinueWith(static _ => { }, TaskScheduler.Default);
                RelayResult result = await relay;
                if (i >= 2)
                {
                    cpu[way].Add((Process.GetCurrentProcess().TotalProcessorTime - before).TotalMilliseconds);
                }

                await sending;
                Assert.That((result.FirstCause, gate.Refusal), Is.EqualTo((RelayShutdownCause.Refused, ServerNameRefusal.TooLarge)));
            }
        }

        foreach (var (way, frames) in ways)
        {
            await TestContext.Out.WriteLineAsync(
                $"{way} ({frames.Length} tunnel bytes): CPU {Median(cpu[way]):F1} ms a stream (median of {Streams}; {string.Join(", ", cpu[way].Select(c => c.ToString("F1")))})");
        }
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);

    private static ServerNameGate? Gate(bool gated) =>
        gated ? ServerNameGate.Create(TlsServerNameMode.Require, ["www.allowed.test"], static _ => true) : null;

    private static async Task<double> ConnectionRateAsync(bool gated, int connections)
    {
        var stopwatch = Stopwatch.StartNew();
        byte[] answer = new byte[1];
        byte[] heard = new byte[ClientHello.Length];
        for (int i = 0; i < connections; i++)
        {
            using var front = await SocketPair.ConnectAsync(SocketTransport.Tcp);
            using var back = await SocketPair.ConnectAsync(SocketTransport.Tcp);
            Task<RelayResult> relay = SocketRelay.RunAsync(front.Right, back.Left, default, default, RelayOptions.Default, Gate(gated), CancellationToken.None);
            await front.Left.SendAsync(ClientHello);
            await back.Right.ReceiveAsync(heard.AsMemory()); // the ClientHello arrives in one piece here (one segment)
            await back.Right.SendAsync(answer);
            await front.Left.ReceiveAsync(answer.AsMemory());
            front.Left.Shutdown(SocketShutdown.Send);
            back.Right.Shutdown(SocketShutdown.Send);
            await relay;
        }

        return connections / stopwatch.Elapsed.TotalSeconds;
    }

    private static async Task<double> ThroughputAsync(bool gated, long total)
    {
        using var front = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        using var back = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        byte[] chunk = DuplexRelayTests.RandomBytes(64 * 1024, seed: 5);
        var stopwatch = Stopwatch.StartNew();
        Task<RelayResult> relay = SocketRelay.RunAsync(front.Right, back.Left, default, default, RelayOptions.Default, Gate(gated), CancellationToken.None);
        Task drain = Task.Run(async () =>
        {
            byte[] buffer = new byte[256 * 1024];
            while (await back.Right.ReceiveAsync(buffer.AsMemory()) > 0)
            {
            }

            back.Right.Shutdown(SocketShutdown.Send);
        });
        await front.Left.SendAsync(ClientHello);
        for (long sent = 0; sent < total; sent += chunk.Length)
        {
            await front.Left.SendAsync(chunk);
        }

        front.Left.Shutdown(SocketShutdown.Send);
        await drain;
        RelayResult result = await relay;
        stopwatch.Stop();
        Assert.That(result.BytesAToB, Is.EqualTo(total + ClientHello.Length));
        return total / 1e6 / stopwatch.Elapsed.TotalSeconds;
    }
}
