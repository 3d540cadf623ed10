using System.Net;
using System.Net.Sockets;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// TLS server-name verification end to end (<c>egress.tls_server_name</c>, default "require"), with real clients in the
/// enclave and <c>openssl s_server -msg</c> in the world, which prints every ClientHello that reaches it: an address
/// learned for www.allowed.test is refused under another server name before any client byte leaves the enclave,
/// allowed under its own, a server that speaks first is not held up, and the parent enforces the same on its own
/// (a wrong-SNI ClientHello sent straight over the tunnel).
/// </summary>
[TestFixture]
public sealed class ServerNameVerificationTests : EgressFixture
{
    private const string Name = "www.allowed.test";
    private const string AllowedNotLearned = "other.allowed.test";
    private const string BannerName = "smtp.allowed.test";
    private const int TlsPort = 443;

#pragma warning disable NUnit1032 // started through the topology, which stops it in TearDown
    private BackgroundProcess? tlsServer;
#pragma warning restore NUnit1032

    private static IPAddress Address => WorldAddresses.Unlisted;

    internal override string ConfigToml =>
        EnclaveConfig.Render([$"{Name}:{TlsPort}", $"{AllowedNotLearned}:{TlsPort}", $"{BannerName}:{WorldPorts.Banner}"]);

    internal override async Task PrepareAsync(Topology topology)
    {
        await topology.StartDnsmasqAsync(
            DnsmasqRecord.Host(Name, Address), DnsmasqRecord.Host(AllowedNotLearned, WorldAddresses.Allowed), DnsmasqRecord.Host(BannerName, WorldAddresses.Allowed));
        topology.SetEnclaveNameserver(IPAddress.Loopback);
        tlsServer = await TlsWorldServer.StartAsync(topology, Name, TlsPort);
    }

    private BackgroundProcess TlsServer => tlsServer ?? throw new InvalidOperationException("no TLS server");

    /// <summary>How many ClientHellos reached the TLS server so far (s_server -msg prints one line for each).</summary>
    private int ClientHellosReceived => TlsServer.Lines.Count(line => line.Contains("ClientHello", StringComparison.Ordinal) && line.StartsWith("<<<", StringComparison.Ordinal));

    private async Task LearnAsync()
    {
        var learned = await Clients.CurlAsync(Topology.Enclave, $"https://{Name}/", "-k", "-o", "/dev/null", "-w", "%{http_code}");
        Assert.That((learned.ExitCode, learned.StandardOutput), Is.EqualTo((0, "200")), learned.ToString);
    }

    [Test]
    public async Task AnotherServerNameOnALearnedAddressIsRefusedBeforeAnyByteLeaves()
    {
        await LearnAsync();
        int before = ClientHellosReceived;

        var openssl = await Clients.ShellAsync(Topology.Enclave, $"openssl s_client -connect {Address}:{TlsPort} -servername evil.test </dev/null 2>&1");
        var curl = await Clients.CurlAsync(Topology.Enclave, "https://evil.test/", "-k", "--resolve", $"evil.test:{TlsPort}:{Address}");
        var notLearned = await Clients.CurlAsync(Topology.Enclave, $"https://{AllowedNotLearned}/", "-k", "--resolve", $"{AllowedNotLearned}:{TlsPort}:{Address}");
        string destination = $"{Address}:{TlsPort}";
        var enclaveEvil = await LogLineAsync(Deployment.Enclave, destination, "refused: server name evil.test is not allowed by any entry", $"learned from {Name}", "egress.tls_server_name = \"require\"");
        var enclaveOther = await LogLineAsync(Deployment.Enclave, destination, $"refused: server name {AllowedNotLearned} is not a name the address was learned from", $"learned from {Name}");

        Assert.Multiple(() =>
        {
            Assert.That(openssl.StandardOutput, Does.Contain("Cipher is (NONE)"), openssl.ToString);
            Assert.That(curl.ExitCode, Is.AnyOf(35, 56), curl.ToString);
            Assert.That(notLearned.ExitCode, Is.AnyOf(35, 56), notLearned.ToString);
            Assert.That(enclaveEvil, Is.Not.Null, () => $"no refusal of evil.test in the enclave's log:\n{Deployment.Enclave.Output}");
            Assert.That(enclaveOther, Is.Not.Null, () => $"no refusal of {AllowedNotLearned} in the enclave's log:\n{Deployment.Enclave.Output}");
            Assert.That(ClientHellosReceived, Is.EqualTo(before), () => $"a refused ClientHello reached the server:\n{TlsServer.Output}");
        });
    }

    /// <summary>A ClientHello sent a while after the connect is not there when the enclave accepts the connection (one
    /// that is is refused before any tunnel stream opens): the check reads it in the relay, after the parent dialled, and
    /// the parent says why the connection ended with no client byte sent.</summary>
    [Test]
    public async Task AClientHelloSentAfterTheSetUpIsRefusedInTheRelayAndTheParentSaysWhy()
    {
        await LearnAsync();
        int before = ClientHellosReceived;
        string hello = Path.Combine(Repository.Root, "fuzz", "corpus", "tls-client-hello", "curl-evil.test");
        const string LateHello = """
            import socket, sys, time
            s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
            time.sleep(0.5)
            s.sendall(open(sys.argv[3], "rb").read())
            try:
                print("closed" if s.recv(4096) == b"" else "answered")
            except ConnectionResetError:
                print("reset")
            """;

        var late = await Command.RunInNamespaceAsync(Topology.Enclave, TimeSpan.FromSeconds(20), "/usr/bin/python3", "-c", LateHello, $"{Address}", $"{TlsPort}", hello);
        string destination = $"{Address}:{TlsPort}";
        var enclaveRefused = await LogLineAsync(Deployment.Enclave, destination, "refused: server name evil.test is not allowed by any entry", $"learned from {Name}");
        var parentClosed = await LogLineAsync(Deployment.Host, $"connection to {destination} closed: 0 bytes out", "received Refused"); // tunnel v2: the enclave's END(Refused)
        var parentWhy = await LogLineAsync(Deployment.Host, $"connection to {destination}", "refused by the enclave's TLS server-name check", "no client byte reached the destination");

        Assert.Multiple(() =>
        {
            Assert.That((late.ExitCode, late.StandardOutput.Trim()), Is.EqualTo((0, "reset")), late.ToString);
            Assert.That(enclaveRefused, Is.Not.Null, () => $"no refusal in the enclave's log:\n{Deployment.Enclave.Output}");
            Assert.That(parentClosed, Is.Not.Null, () => $"the parent relayed client bytes, or does not say the enclave refused:\n{Deployment.Host.Output}");
            Assert.That(parentWhy, Is.Not.Null, () => $"the parent does not say why the connection ended:\n{Deployment.Host.Output}");
            Assert.That(ClientHellosReceived, Is.EqualTo(before), () => $"a refused ClientHello reached the server:\n{TlsServer.Output}");
        });
        Assert.That(ConnectionIdOf(parentWhy!), Is.EqualTo(ConnectionIdOf(enclaveRefused!)).And.Not.Null, "the two hosts' refusal lines join by the connection id");
    }

    /// <summary>The connection id at the end of a log line (", conn 0123456789abcdef"), or null.</summary>
    private static string? ConnectionIdOf(string line) =>
        System.Text.RegularExpressions.Regex.Match(line, ", conn (?<id>[0-9a-f]{16})$") is { Success: true } match ? match.Groups["id"].Value : null;

    [Test]
    public async Task TheNameTheAddressWasLearnedFromIsAllowed()
    {
        await LearnAsync();
        int before = ClientHellosReceived;

        var openssl = await Clients.ShellAsync(Topology.Enclave, $"openssl s_client -connect {Address}:{TlsPort} -servername {Name} </dev/null 2>&1");
        var curl = await Clients.CurlAsync(Topology.Enclave, $"https://{Name}/", "-k", "--resolve", $"{Name}:{TlsPort}:{Address}", "-o", "/dev/null", "-w", "%{http_code}");

        Assert.Multiple(() =>
        {
            Assert.That(openssl.StandardOutput, Does.Contain("Cipher is TLS_"), openssl.ToString);
            Assert.That((curl.ExitCode, curl.StandardOutput), Is.EqualTo((0, "200")), curl.ToString);
            Assert.That(ClientHellosReceived, Is.EqualTo(before + 2), TlsServer.Output);
        });
    }

    /// <summary>A new user's trial: a server name with a trailing dot (Python's ssl sends server_hostname as given) was
    /// refused as "not a well-formed ClientHello", though it names the same host and the server accepts it.</summary>
    [Test]
    public async Task AServerNameWithATrailingDotIsTheSameName()
    {
        await LearnAsync();
        int before = ClientHellosReceived;

        var openssl = await Clients.ShellAsync(Topology.Enclave, $"openssl s_client -connect {Address}:{TlsPort} -servername {Name}. </dev/null 2>&1");

        Assert.Multiple(() =>
        {
            Assert.That(openssl.StandardOutput, Does.Contain("Cipher is TLS_"), openssl.ToString);
            Assert.That(ClientHellosReceived, Is.EqualTo(before + 1), TlsServer.Output);
        });
    }

    [Test]
    public async Task AServerThatSpeaksFirstIsNotHeldUp()
    {
        // nc -d sends nothing: the banner must arrive while the client's first bytes are still awaited.
        var banner = await Clients.ShellAsync(Topology.Enclave, $"timeout 5 nc -d {BannerName} {WorldPorts.Banner}; true");

        Assert.That(banner.StandardOutput, Does.StartWith(ServerBehaviours.Banner), banner.ToString);
    }

    [Test]
    public async Task TheParentRefusesAWrongServerNameOnItsOwn()
    {
        await LearnAsync();
        int before = ClientHellosReceived;
        byte[] clientHello = File.ReadAllBytes(Path.Combine(Repository.Root, "fuzz", "corpus", "tls-client-hello", "curl-evil.test"));

        using var tunnel = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await tunnel.ConnectAsync(new UnixDomainSocketEndPoint(Deployment.TunnelSocketPath), cts.Token);
        await tunnel.SendAsync(TunnelProbe.TcpRequest(new IPEndPoint(Address, TlsPort), Name), cts.Token);
        byte[] status = new byte[3];
        int got = await tunnel.ReceiveAsync(status, cts.Token);
        await tunnel.SendAsync(clientHello, cts.Token);
        int after = await ReceiveOrResetAsync(tunnel, cts.Token);
        var parentRefused = await LogLineAsync(Deployment.Host, $"connection to {Address}:{TlsPort} (for {Name}) refused: server name evil.test", $"learned from {Name}");

        Assert.Multiple(() =>
        {
            Assert.That((got, status[1]), Is.EqualTo((3, TunnelProbe.StatusOk)), "the parent connected the destination");
            Assert.That(after, Is.LessThanOrEqualTo(0), "the stream ended (0) or was reset (-1) without an answer");
            Assert.That(parentRefused, Is.Not.Null, () => $"no refusal in the parent's log:\n{Deployment.Host.Output}");
            Assert.That(ClientHellosReceived, Is.EqualTo(before), () => $"the ClientHello reached the server:\n{TlsServer.Output}");
        });
    }

    private static async Task<int> ReceiveOrResetAsync(Socket socket, CancellationToken cancellationToken)
    {
        try
        {
            return await socket.ReceiveAsync(new byte[4096], cancellationToken);
        }
        catch (SocketException)
        {
            return -1;
        }
    }
}
