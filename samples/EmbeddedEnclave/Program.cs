// EmbeddedEnclave: both sides of Egress in one process, composed from the Egress.Core package.
//
// The stock hosts read enclave.toml and rely on iptables to send applications' connections to the proxy. This
// program composes the parts differently: the allowlist is built in code, the parent side (TunnelGateway) runs
// in-process on a unix: tunnel, and the "enclave application" opens its tunnel streams itself with TunnelClient,
// the way an SDK could tunnel explicitly without any iptables rules. It fetches from a small server it starts on
// 127.0.0.1 (explicitly allowed) and shows the parent refusing what the policy does not allow.
//
// Exit code 0 when every step gave the expected result, 1 otherwise.
using System.Net;
using System.Net.Sockets;
using System.Text;
using EmbeddedEnclave;
using Egress.Gateway;
using Egress.Policy;
using Egress.Tunnel;
using Egress.Vsock;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

var checks = new Checks();
using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));

// 1. An allowlist built in code, with its own cache of DNS-learned addresses.
Console.WriteLine("== policy");
var cache = new AllowlistCache(new AllowlistCacheOptions { TtlFloor = TimeSpan.FromSeconds(30) });
var policy = EgressPolicy.Create(
    enabled: true,
    destinations: ["127.0.0.1", "api.example.test", "*.cdn.example.test", "198.18.0.0/15"],
    cache);
foreach (var rule in policy.Destinations)
{
    Console.WriteLine($"   rule {rule.Kind,-17} {rule.Text}");
}

checks.Decision("name api.example.test", policy.CheckName("api.example.test"), DecisionReason.NameEntry);
checks.Decision("name IMG.cdn.example.test.", policy.CheckName("IMG.cdn.example.test."), DecisionReason.NameEntry);
checks.Decision("name cdn.example.test (apex)", policy.CheckName("cdn.example.test"), DecisionReason.NameNotAllowed);
checks.Decision("name evil.test", policy.CheckName("evil.test"), DecisionReason.NameNotAllowed);
checks.Decision("address 127.0.0.1", policy.CheckAddress(IPAddress.Loopback), DecisionReason.StaticEntry);
checks.Decision("address 198.19.4.2", policy.CheckAddress(IPAddress.Parse("198.19.4.2")), DecisionReason.StaticEntry);
checks.Decision("address 169.254.169.254", policy.CheckAddress(IPAddress.Parse("169.254.169.254")), DecisionReason.InternalRange);
var learnedAddress = IPAddress.Parse("203.0.113.7");
checks.Decision("address 203.0.113.7", policy.CheckAddress(learnedAddress), DecisionReason.NeverLearned);
checks.Learn("learn api.example.test -> 203.0.113.7", policy.Learn("api.example.test", learnedAddress, TimeSpan.FromMinutes(5)), LearnOutcome.Learned);
checks.Decision("address 203.0.113.7", policy.CheckAddress(learnedAddress), DecisionReason.Learned);
checks.Learn("learn api.example.test -> 10.1.2.3", policy.Learn("api.example.test", IPAddress.Parse("10.1.2.3"), TimeSpan.FromMinutes(5)), LearnOutcome.InternalRange);
checks.Learn("learn evil.test -> 203.0.113.8", policy.Learn("evil.test", IPAddress.Parse("203.0.113.8"), TimeSpan.FromMinutes(5)), LearnOutcome.NameNotAllowed);

// 2. Endpoints: the production tunnel is VSOCK (parsed and formatted here; never connected on this machine).
Console.WriteLine("== endpoints");
checks.Text("vsock://parent:4433", VsockEndPoint.Parse("vsock://parent:4433").ToString(), "vsock://3:4433");
checks.Text("VsockEndPoint(AnyCid, 4433)", new VsockEndPoint(VsockEndPoint.AnyCid, 4433).ToString(), "vsock://any:4433");
checks.Text("tunnel vsock://3:4433 transport", TunnelEndpoint.Parse("vsock://3:4433").Transport.ToString(), nameof(TunnelTransport.Vsock));
Console.WriteLine($"   AF_VSOCK available here: {VsockSocket.IsSupported}");

// 3. The parent side: a tunnel gateway on a unix: socket, checking with the same policy, and an origin server.
Console.WriteLine("== parent side");
var tunnel = TunnelEndpoint.Parse($"unix:{Path.Combine(Path.GetTempPath(), $"egress-embedded-{Environment.ProcessId}.sock")}");
using var loggerFactory = LoggerFactory.Create(builder => builder.AddSimpleConsole(options =>
{
    options.SingleLine = true;
    options.ColorBehavior = LoggerColorBehavior.Disabled;
}));
await using var origin = OriginServer.Start();
await using (var gateway = new TunnelGateway(
    new TunnelGatewayOptions { Listen = tunnel, ConnectTimeout = TimeSpan.FromSeconds(3), ShutdownDrain = TimeSpan.FromSeconds(1) },
    policy,
    loggerFactory))
{
    gateway.Start();
    Console.WriteLine($"   gateway listening on {tunnel}, origin server on {origin.EndPoint}");

    // 4. The enclave side: the public TunnelClient opens a stream per destination and waits for the parent's status.
    Console.WriteLine("== enclave side");
    var client = new TunnelClient(tunnel);
    try
    {
        var fetched = await client.ConnectAsync(origin.EndPoint, "origin.local", deadline.Token);
        checks.Connect($"tunnel to {origin.EndPoint}", fetched, TunnelConnectError.None);
        if (fetched.Socket is { } socket)
        {
            // The stream is now the origin's: send a line, half-close, read everything back. (A server that speaks first,
            // such as SMTP, may have its first bytes in fetched.ReceivedAfterStatus; this origin waits for the line.)
            await using var stream = new NetworkStream(socket, ownsSocket: true);
            await stream.WriteAsync(Encoding.ASCII.GetBytes("GET /hello\n"), deadline.Token);
            socket.Shutdown(SocketShutdown.Send);
            using var reader = new StreamReader(stream, Encoding.ASCII);
            checks.Text("reply from the origin", await reader.ReadToEndAsync(deadline.Token), "hello from the origin, you sent: GET /hello");
        }

        var metadata = new IPEndPoint(IPAddress.Parse("169.254.169.254"), 80);
        checks.Refused($"tunnel to {metadata}", await client.ConnectAsync(metadata, hostName: null, deadline.Token), TunnelStatus.DeniedByPolicy);

        var closed = OriginServer.UnusedLoopbackEndPoint();
        checks.Refused($"tunnel to {closed} (nothing listens)", await client.ConnectAsync(closed, hostName: null, deadline.Token), TunnelStatus.ConnectionRefused);
    }
    catch (OperationCanceledException) when (deadline.IsCancellationRequested)
    {
        checks.Fail("the tunnel exchanges did not finish within 10 s");
    }

    await gateway.StopAsync();
}

Console.WriteLine(checks.Failures == 0
    ? $"== OK: {checks.Passed} checks passed"
    : $"== FAILED: {checks.Failures} of {checks.Passed + checks.Failures} checks failed");
return checks.Failures == 0 ? 0 : 1;
