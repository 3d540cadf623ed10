using System.Globalization;
using System.Text.RegularExpressions;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// Issue 13 cases 2, 4 and 5 (first half) for real, with egress-host under <c>ulimit -n 1024</c> (a derived
/// <c>host.max_streams</c> of a few hundred): a peer that opens hundreds of idle tunnel DNS streams (and some that
/// each hold a partial 64 KiB frame) must not take the streams an app's connection needs; a client that pipelines
/// tens of thousands of queries for a name whose upstream never answers must not make a well-behaved client's
/// queries wait, nor grow egress-enclave without bound; a DNS-over-TCP client that trickles a byte at a time must be
/// disconnected in bounded time. dnsmasq is the upstream; it forwards <c>hole.allowed.test</c> to a server that
/// reads queries and never answers.
/// </summary>
[TestFixture]
public sealed partial class DnsFairnessTests
{
    private const int HostOpenFiles = 1024;
    private const string Www = "www.allowed.test";
    private const string Hole = "hole.allowed.test";
    private const int HolePort = 5300;

    /// <summary>Reads queries on argv[1]:argv[2] and never answers.</summary>
    private const string BlackHoleScript = """
        import socket, sys
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((sys.argv[1], int(sys.argv[2])))
        print("listening", flush=True)
        while True:
            s.recv(65536)
        """;

    /// <summary>
    /// Opens argv[2] tunnel DNS streams to the Unix socket argv[1] that each send the start of a 65,535-byte frame,
    /// then argv[3] idle ones, holds them argv[4] s, and reports how many of each kind are still open.
    /// </summary>
    private const string TunnelFloodScript = """
        import resource, socket, sys, time
        path, partial, idle, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        def open_stream(extra):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect(path)
                s.sendall(b"\x01\x02\x00\x00" + extra)
            except OSError:
                s.close()
                return None
            return s
        partials = [open_stream(b"\xff\xff" + bytes(1000)) for _ in range(partial)]
        idles = [open_stream(b"") for _ in range(idle)]
        time.sleep(hold)
        def is_open(s):
            if s is None:
                return False
            s.setblocking(False)
            try:
                while True:
                    if s.recv(4096) == b"":
                        return False
            except BlockingIOError:
                return True
            except OSError:
                return False
        print(f"partial_open={sum(map(is_open, partials))} of {partial} idle_open={sum(map(is_open, idles))} of {idle}", flush=True)
        for s in partials + idles:
            if s is not None:
                s.close()
        """;

    /// <summary>
    /// One DNS-over-TCP connection to 127.0.0.1:53 that sends the first bytes of a 256-byte frame one every argv[1] s,
    /// for at most argv[2] s; reports how long the forwarder kept it.
    /// </summary>
    private const string SlowByteScript = """
        import socket, sys, time
        interval, cap = float(sys.argv[1]), float(sys.argv[2])
        s = socket.create_connection(("127.0.0.1", 53), timeout=5)
        frame = b"\x01\x00" + bytes(254)
        start = time.monotonic()
        sent = 0
        closed = False
        s.settimeout(interval)
        while time.monotonic() - start < cap and not closed:
            try:
                s.send(frame[sent:sent + 1])
                sent += 1
                if s.recv(1) == b"":
                    closed = True
            except socket.timeout:
                pass
            except OSError:
                closed = True
        print(f"closed={closed} after={time.monotonic() - start:.1f} bytes={sent}", flush=True)
        """;

    /// <summary>
    /// The flood: argv[1] DNS-over-TCP connections that each pipeline argv[2] queries for hole.allowed.test, and one UDP
    /// socket that sends argv[3] more; runs argv[4] s, reading whatever comes back.
    /// </summary>
    private const string PipelinedFloodScript = """
        import socket, struct, sys, threading, time
        conns, per, udp_n, duration = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        def query(i):
            return struct.pack(">HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + b"\x04hole\x07allowed\x04test\x00" + struct.pack(">HH", 1, 1)
        answers = [0]
        def read(s):
            try:
                while True:
                    data = s.recv(65536)
                    if not data:
                        return
                    answers[0] += 1
            except OSError:
                return
        def tcp():
            try:
                s = socket.create_connection(("127.0.0.1", 53), timeout=duration)
                threading.Thread(target=read, args=(s,), daemon=True).start()
                s.sendall(b"".join(struct.pack(">H", len(q)) + q for q in map(query, range(per))))
            except OSError:
                pass
        def udp():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect(("127.0.0.1", 53))
            threading.Thread(target=read, args=(s,), daemon=True).start()
            for i in range(udp_n):
                try:
                    s.send(query(i))
                except OSError:
                    pass
        for _ in range(conns):
            threading.Thread(target=tcp, daemon=True).start()
        threading.Thread(target=udp, daemon=True).start()
        time.sleep(duration)
        print(f"flood reads={answers[0]}", flush=True)
        """;

    /// <summary>
    /// A well-behaved app: one query for argv[1] every 0.2 s from a fresh UDP socket (5 s timeout each), for argv[2] s;
    /// reports the count, the answered (NOERROR) count and latencies in ms.
    /// </summary>
    private const string VictimScript = """
        import socket, struct, sys, time, random
        name, duration = sys.argv[1], float(sys.argv[2])
        qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
        lat, ok, n = [], 0, 0
        end = time.monotonic() + duration
        while time.monotonic() < end:
            qid = random.randrange(65536)
            q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(5)
            start = time.monotonic()
            n += 1
            try:
                s.sendto(q, ("127.0.0.1", 53))
                while True:
                    data = s.recv(4096)
                    if data[:2] == q[:2]:
                        break
                lat.append((time.monotonic() - start) * 1000)
                if data[3] & 0x0F == 0:
                    ok += 1
            except socket.timeout:
                lat.append(5000.0)
            s.close()
            time.sleep(0.2)
        lat.sort()
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"victim n={n} ok={ok} p50={lat[len(lat) // 2]:.1f} p99={p99:.1f} max={lat[-1]:.1f}", flush=True)
        """;

    private Topology? topology;
    private EgressDeployment? deployment;

    [OneTimeSetUp]
    public async Task Deploy()
    {
        Root.RequireOrIgnore();
        topology = await Topology.CreateAsync();
        await topology.StartWorldServicesAsync();
        var hole = topology.StartProcess("black-hole", topology.World, "/usr/bin/python3", "-c", BlackHoleScript, WorldAddresses.Dns.ToString(), HolePort.ToString(CultureInfo.InvariantCulture));
        await hole.WaitForLineAsync(line => line.Contains("listening", StringComparison.Ordinal), TimeSpan.FromSeconds(10));
        await topology.StartDnsmasqAsync(
            DnsmasqRecord.Host(Www, WorldAddresses.Allowed),
            new DnsmasqRecord($"--server=/{Hole}/{WorldAddresses.Dns}#{HolePort}"),
            new DnsmasqRecord("--dns-forward-max=10000"));
        topology.SetEnclaveNameserver(System.Net.IPAddress.Loopback);
        deployment = await EgressDeployment.StartAsync(
            topology, EnclaveConfig.Render([Www, Hole, "198.18.0.10"]), HostOpenFiles, enclaveOpenFiles: null);
    }

    [OneTimeTearDown]
    public async Task TearDown()
    {
        if (topology is not null)
        {
            if (deployment is not null)
            {
                await TestContext.Progress.WriteLineAsync($"[harness] {nameof(DnsFairnessTests)} egress-enclave log (tail):\n{Tail(deployment.Enclave, 60)}\n[harness] egress-host log (tail):\n{Tail(deployment.Host, 60)}");
            }

            await topology.DisposeAsync();
        }
    }

    /// <summary>Case 5, first half: one byte every 3 s (each within the 10 s idle timeout) no longer holds the
    /// connection: the frame must be whole 5 s after its first byte.</summary>
    [Test]
    public async Task ADnsOverTcpClientTricklingOneByteAtATimeIsDisconnectedInBoundedTime()
    {
        var slow = await Command.RunInNamespaceAsync(
            topology!.Enclave, TimeSpan.FromSeconds(60), "/usr/bin/python3", "-c", SlowByteScript, "3", "24");
        await TestContext.Out.WriteLineAsync($"slow-byte client: {slow.StandardOutput.Trim()}");
        var match = SlowResult().Match(slow.StandardOutput);
        Assert.That(match.Success, Is.True, slow.ToString);
        double after = double.Parse(match.Groups["after"].Value, CultureInfo.InvariantCulture);
        Assert.Multiple(() =>
        {
            Assert.That(match.Groups["closed"].Value, Is.EqualTo("True"), () => $"still connected after 24 s: {slow}");
            Assert.That(after, Is.LessThan(8), () => $"not closed within the 5 s frame timeout (and one 3 s step): {slow}");
        });
    }

    /// <summary>
    /// Case 2: 40 tunnel DNS streams each holding a partial 64 KiB frame, then 600 idle ones (more than the parent's
    /// derived stream limit). The partial frames are closed at the frame timeout, the idle streams beyond the DNS
    /// stream share take the places of other streams that forwarded nothing (the line says so at the limit), and the
    /// parent keeps serving an app's connection and DNS.
    /// </summary>
    [Test]
    public async Task IdleAndPartialFrameTunnelDnsStreamsCannotTakeTheStreamsAnAppNeeds()
    {
        var enclave = topology!.Enclave;
        var primed = await Clients.DigAsync(enclave, Www); // the enclave's own DNS streams are open before the flood
        Assert.That(primed.Status, Is.EqualTo("NOERROR"), primed.ToString);
        int hostBefore = Count(deployment!.Host);

        var flood = Command.RunInNamespaceAsync(
            topology.Parent, TimeSpan.FromSeconds(60), "/usr/bin/python3", "-c", TunnelFloodScript, deployment.TunnelSocketPath, "40", "600", "12");
        await Task.Delay(TimeSpan.FromSeconds(8));
        int hostDuring = Count(deployment.Host);
        var curl = await Clients.CurlAsync(enclave, "http://198.18.0.10/");
        var dig = await Clients.DigAsync(enclave, Www);
        var flooded = await flood;
        string report = $"egress-host descriptors {hostBefore} before, {hostDuring} during the flood; {flooded.StandardOutput.Trim()}; curl exit {curl.ExitCode}; dig {dig.Status}";
        await TestContext.Out.WriteLineAsync(report);

        var match = FloodResult().Match(flooded.StandardOutput);
        Assert.That(match.Success, Is.True, flooded.ToString);
        var limit = await EgressFixture.LogLineAsync(deployment.Host, "dns stream limit reached", "closed a DNS stream so that a new one could open");
        Assert.Multiple(() =>
        {
            Assert.That(deployment.Host.HasExited, Is.False, "egress-host died");
            Assert.That(curl.ExitCode, Is.Zero, () => $"the app's connection was not served during the flood ({report}): {curl}\n{Tail(deployment.Host, 30)}");
            Assert.That(dig.Status, Is.EqualTo("NOERROR"), () => $"DNS failed during the flood ({report}): {dig}");
            Assert.That(int.Parse(match.Groups["partial"].Value, CultureInfo.InvariantCulture), Is.Zero, () => $"streams holding a partial frame outlived the frame timeout: {report}");
            Assert.That(limit, Is.Not.Null, () => $"egress-host did not log the DNS stream limit:\n{Tail(deployment.Host, 30)}");
        });
    }

    /// <summary>
    /// Case 4: 8 DNS-over-TCP connections pipelining 3,200 queries each (25,600, about 1 MB) plus 10,000 over UDP, all
    /// for a name whose upstream never answers, while a well-behaved app asks for another name every 0.2 s: every one
    /// of its queries is answered NOERROR, within 1 s, and egress-enclave stays below 256 MiB.
    /// </summary>
    [Test]
    public async Task APipelinedFloodForABlackHoledNameLeavesAnotherClientsQueriesFastAndTheEnclaveSmall()
    {
        var enclave = topology!.Enclave;
        var unloaded = await Command.RunInNamespaceAsync(enclave, TimeSpan.FromSeconds(30), "/usr/bin/python3", "-c", VictimScript, Www, "2");
        long rssBefore = RssKiB(deployment!.Enclave);

        var flood = Command.RunInNamespaceAsync(enclave, TimeSpan.FromSeconds(60), "/usr/bin/python3", "-c", PipelinedFloodScript, "8", "3200", "10000", "15");
        await Task.Delay(TimeSpan.FromSeconds(1));
        var victim = Command.RunInNamespaceAsync(enclave, TimeSpan.FromSeconds(60), "/usr/bin/python3", "-c", VictimScript, Www, "10");
        long rssPeak = rssBefore;
        while (!flood.IsCompleted)
        {
            rssPeak = Math.Max(rssPeak, RssKiB(deployment.Enclave));
            await Task.Delay(200);
        }

        var loaded = await victim;
        var flooded = await flood;
        string report = $"unloaded: {unloaded.StandardOutput.Trim()}; under the flood: {loaded.StandardOutput.Trim()}; {flooded.StandardOutput.Trim()}; " +
            $"egress-enclave RSS {rssBefore / 1024} MiB before, peak {rssPeak / 1024} MiB";
        await TestContext.Out.WriteLineAsync(report);

        var match = VictimResult().Match(loaded.StandardOutput);
        Assert.That(match.Success, Is.True, () => $"{loaded}\n{report}");
        var overload = await EgressFixture.LogLineAsync(deployment.Enclave, "DNS query not forwarded", "in flight");
        Assert.Multiple(() =>
        {
            Assert.That(deployment.Enclave.HasExited || deployment.Host.HasExited, Is.False, "a host died");
            Assert.That(match.Groups["ok"].Value, Is.EqualTo(match.Groups["n"].Value), () => $"not every query of the victim was answered: {report}");
            Assert.That(double.Parse(match.Groups["max"].Value, CultureInfo.InvariantCulture), Is.LessThan(1000), () => $"the victim waited: {report}");
            Assert.That(rssPeak, Is.LessThan(256 * 1024), () => $"egress-enclave grew: {report}");
            Assert.That(overload, Is.Not.Null, () => $"egress-enclave did not log why flood queries were refused:\n{Tail(deployment.Enclave, 30)}");
        });
    }

    [GeneratedRegex(@"closed=(?<closed>\w+) after=(?<after>[0-9.]+)")]
    private static partial Regex SlowResult();

    [GeneratedRegex(@"partial_open=(?<partial>\d+) of \d+ idle_open=(?<idle>\d+)")]
    private static partial Regex FloodResult();

    [GeneratedRegex(@"victim n=(?<n>\d+) ok=(?<ok>\d+) p50=(?<p50>[0-9.]+) p99=(?<p99>[0-9.]+) max=(?<max>[0-9.]+)")]
    private static partial Regex VictimResult();

    private static int Count(BackgroundProcess process) => Directory.GetFileSystemEntries($"/proc/{process.Id}/fd").Length;

    private static long RssKiB(BackgroundProcess process)
    {
        try
        {
            string? line = File.ReadLines($"/proc/{process.Id}/status").FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            return line is null ? 0 : long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return 0;
        }
    }

    private static string Tail(BackgroundProcess process, int lines) => string.Join('\n', process.Lines.TakeLast(lines));
}
