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
