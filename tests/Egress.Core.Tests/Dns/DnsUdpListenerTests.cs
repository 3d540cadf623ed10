using System.Net;
using System.Net.Sockets;
using Egress.Dns.Forwarder;

namespace Egress.Tests.Dns;

/// <summary>The forwarder's UDP receive threads (<see cref="DnsUdpListener"/>).</summary>
public sealed class DnsUdpListenerTests
{
    /// <summary>
    /// An idle listener wakes every <see cref="DnsUdpListener.StopPoll"/> to look at the stop signal. It used to do so
    /// with a receive timeout, which .NET reports by throwing: an idle egress-enclave threw about four SocketExceptions
    /// a second (dotnet-counters, <c>dotnet.exceptions</c>), each a stack walk and allocations on the DNS thread.
    /// </summary>
    [Test]
    public async Task AnIdleListenerWakesWithoutThrowing()
    {
        int timeouts = 0;
        void Count(object? sender, System.Runtime.ExceptionServices.FirstChanceExceptionEventArgs e)
        {
            if (e.Exception is SocketException { SocketErrorCode: SocketError.TimedOut }
                && Thread.CurrentThread.Name?.StartsWith("dns udp", StringComparison.Ordinal) == true)
            {
                Interlocked.Increment(ref timeouts);
            }
        }

        await using var harness = await DnsTunnelHarness.StartAsync([new IPEndPoint(IPAddress.Loopback, 9)]); // never asked: the name below is refused
        AppDomain.CurrentDomain.FirstChanceException += Count;
        try
        {
            await Task.Delay(DnsUdpListener.StopPoll * 5); // at least four wake-ups of each listener

            // Still serving after the idle wake-ups: a query sent now is received and answered (REFUSED: not on the allowlist).
            byte[] answer = await harness.UdpAsync(DnsQueryBytes.Build(0x0101, "idle.not-allowed.test"));
            Assert.Multiple(() =>
            {
                Assert.That(Volatile.Read(ref timeouts), Is.Zero, "receive timeouts thrown on the listener threads");
                Assert.That(Egress.Dns.Wire.DnsMessage.ReadId(answer), Is.EqualTo(0x0101));
            });
        }
        finally
        {
            AppDomain.CurrentDomain.FirstChanceException -= Count;
        }
    }

    /// <summary>A forwarder stopped right after its start (a library consumer's trial, a start racing the dispose) could
    /// close a UDP socket before its thread first ran, and that thread's first step threw ObjectDisposedException,
    /// unhandled on its own thread: the process ended (exit 134). Without the fix this test ends the test run.</summary>
    [Test]
    public async Task AListenerWhoseSocketWasClosedBeforeItsThreadRanEndsQuietly()
    {
        var udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        udp.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var logger = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        var options = new DnsForwarderOptions { Tunnel = Egress.Tunnel.TunnelEndpoint.Parse("unix:/nonexistent/tunnel.sock") };
        using var pool = new DnsTunnelPool(options, logger, CancellationToken.None);
        var handler = new DnsQueryHandler(
            Egress.Policy.EgressPolicy.Create(enabled: true, ["*"], new Egress.Policy.AllowlistCache()), pool, new DnsQueryAdmission(8, 8), metrics: null, logger, TimeProvider.System);
        var listener = new DnsUdpListener(udp, handler, metrics: null, logger, TimeProvider.System);
        udp.Dispose();

        Task ended = listener.Start(CancellationToken.None);

        Assert.That(await Task.WhenAny(ended, Task.Delay(TimeSpan.FromSeconds(10))), Is.SameAs(ended), "the thread ended");
    }
}
