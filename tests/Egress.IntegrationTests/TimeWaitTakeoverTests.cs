using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// Every redirected connection lands on the one proxy address, and when the destination closes first the proxy's
/// side keeps the TIME_WAIT. conntrack gives a connection whose reply tuple is taken another source port, but once
/// that entry is gone (a new connection reopened its tuple) the port is free again while the proxy's TIME_WAIT on it
/// lives on: the application's next connection from that port, to another destination, meets it. It must take the
/// TIME_WAIT over at once (RFC 6191), not be dropped as an old duplicate (<c>TcpExtPAWSTimewait</c>) and wait 1 s for
/// its SYN to be retransmitted, as it was with the kernel's per-address-pair timestamp offsets whenever the new
/// destination's offset was the smaller. <c>rules --apply</c> sets <c>net.ipv4.tcp_timestamps = 2</c> (see
/// <c>TcpTimestamps</c> in egress-enclave).
/// </summary>
[TestFixture]
public sealed class TimeWaitTakeoverTests : EgressFixture
{
    private static readonly IPEndPoint First = new(WorldAddresses.Allowed, WorldPorts.Source);
    private static readonly IPEndPoint Second = new(WorldAddresses.InAllowedCidr, WorldPorts.Source);

    [Test]
    public async Task AConnectionMeetingTheProxysTimeWaitOfAnotherDestinationIsNeverDroppedAsAnOldDuplicate()
    {
        long droppedBefore = await PawsTimeWaitDropsAsync();

        // With per-pair offsets exactly one of the two orders has the new destination's timestamps behind the old's.
        // Source ports above the kernel's ephemeral range (32768-60999): no other connection gets them.
        await MeetTimeWaitOfAnotherDestinationAsync(61234, First, Second);
        await MeetTimeWaitOfAnotherDestinationAsync(61334, Second, First);

        long dropped = await PawsTimeWaitDropsAsync() - droppedBefore;
        Assert.That(dropped, Is.Zero, "SYNs dropped by a TIME_WAIT at the proxy (each costs the application a 1 s retransmission)");
    }

    /// <summary>
    /// From <paramref name="port"/>: to <paramref name="a"/> (the proxy's TIME_WAIT takes the port), to
    /// <paramref name="b"/> (conntrack remaps it to a free port, where the proxy's TIME_WAIT from b then sits), to b
    /// again (reopens that conntrack entry, so the remapped port is free in conntrack); then from the remapped port
    /// to <paramref name="a"/>, into the TIME_WAIT left by b.
    /// </summary>
    private async Task MeetTimeWaitOfAnotherDestinationAsync(int port, IPEndPoint a, IPEndPoint b)
    {
        await DownloadAsync(port, a);
        var before = await ProxyTimeWaitPeerPortsAsync();
        await DownloadAsync(port, b);
        int[] remappedPorts = [.. (await ProxyTimeWaitPeerPortsAsync()).Except(before).Except([port])];
        Assert.That(remappedPorts, Has.Length.EqualTo(1), $"conntrack gave the connection from {port} to {b} one other source port at the proxy (a NAT clash)");
        int remapped = remappedPorts[0];
        await DownloadAsync(port, b);
        Assert.That(await ProxyTimeWaitPeerPortsAsync(), Does.Contain(remapped), "the TIME_WAIT the next connection meets");

        await DownloadAsync(remapped, a);
    }

    /// <summary>From <paramref name="sourcePort"/>, asks the source for 1000 bytes, reads until its FIN (so the proxy closes first), then closes.</summary>
    private async Task DownloadAsync(int sourcePort, IPEndPoint destination)
    {
        using var cts = new CancellationTokenSource(Clients.Timeout);
        using var socket = NetworkNamespace.CreateTcpSocket(Topology.Enclave, AddressFamily.InterNetwork);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        socket.Bind(new IPEndPoint(IPAddress.Any, sourcePort));
        await socket.ConnectAsync(destination, cts.Token);
        await socket.SendAsync(ServerBehaviours.SourceRequest(1000, 1), SocketFlags.None, cts.Token);
        var buffer = new byte[4096];
        long total = 0;
        int read;
        while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token)) > 0)
        {
            total += read;
        }

        Assert.That(total, Is.EqualTo(1000), $"from port {sourcePort} to {destination}");
    }

    /// <summary>The peer ports of the proxy's TIME_WAIT sockets in the enclave (<c>ss</c>).</summary>
    private async Task<HashSet<int>> ProxyTimeWaitPeerPortsAsync()
    {
        var ss = await Command.RunInNamespaceAsync(Topology.Enclave, Clients.Timeout, "ss", "-Htn", "state", "time-wait", "sport", "=", ":4444");
        Assert.That(ss.ExitCode, Is.Zero, ss.ToString);
        return [.. ss.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1])
            .Select(peer => int.Parse(peer[(peer.LastIndexOf(':') + 1)..], CultureInfo.InvariantCulture))];
    }

    /// <summary>The enclave namespace's <c>TcpExt: PAWSTimewait</c> counter (/proc/net/netstat).</summary>
    private async Task<long> PawsTimeWaitDropsAsync()
    {
        var netstat = await Command.RunInNamespaceAsync(Topology.Enclave, Clients.Timeout, "cat", "/proc/net/netstat");
        Assert.That(netstat.ExitCode, Is.Zero, netstat.ToString);
        var lines = netstat.StandardOutput.Split('\n').Where(l => l.StartsWith("TcpExt:", StringComparison.Ordinal)).ToArray();
        Assert.That(lines, Has.Length.EqualTo(2), netstat.StandardOutput);
        int column = Array.IndexOf(lines[0].Split(' '), "PAWSTimewait");
        Assert.That(column, Is.Positive, "PAWSTimewait is in TcpExt");
        return long.Parse(lines[1].Split(' ')[column], CultureInfo.InvariantCulture);
    }
}
