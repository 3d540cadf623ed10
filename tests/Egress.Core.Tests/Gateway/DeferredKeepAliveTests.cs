using System.Net.Sockets;
using Egress.Gateway;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Gateway;

/// <summary>
/// Keepalive goes on a destination socket one to two periods after it was added, read back from the kernel on real
/// TCP sockets: not before, never on a socket closed or removed meanwhile (a spent ticket removes nothing),
/// never when it is off, and the timer stops once nothing waits.
/// </summary>
public sealed class DeferredKeepAliveTests
{
    private static readonly TcpKeepAlive Configured = new(TimeSpan.FromSeconds(7), TimeSpan.FromSeconds(3), 4);

    private readonly List<Socket> _sockets = [];

    [TearDown]
    public void TearDown()
    {
        foreach (Socket socket in _sockets)
        {
            socket.Dispose();
        }
    }

    [Test]
    public void ASocketIsArmedWithTheConfiguredValuesWithinTwoPeriodsAndNotBefore()
    {
        var time = new FakeTimeProvider();
        var keepAlive = new DeferredKeepAlive(Configured, time);
        Socket early = NewSocket();
        keepAlive.Add(early);

        Assert.That(KeepAliveOn(early), Is.False, "not at the connect");
        time.Advance(DeferredKeepAlive.Delay);
        Socket late = NewSocket(); // added in the second period: armed at the end of the third
        keepAlive.Add(late);
        Assert.That(KeepAliveOn(early), Is.False, "not after one period: it was added during it");

        time.Advance(DeferredKeepAlive.Delay);
        Assert.Multiple(() =>
        {
            Assert.That(KeepAliveOn(early), Is.True, "SO_KEEPALIVE after two periods");
            Assert.That(early.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime), Is.EqualTo(7), "TCP_KEEPIDLE");
            Assert.That(early.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval), Is.EqualTo(3), "TCP_KEEPINTVL");
            Assert.That(early.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount), Is.EqualTo(4), "TCP_KEEPCNT");
            Assert.That(KeepAliveOn(late), Is.False, "the later socket waits its own full period");
        });

        time.Advance(DeferredKeepAlive.Delay);
        Assert.Multiple(() =>
        {
            Assert.That(KeepAliveOn(late), Is.True);
            Assert.That(keepAlive.Waiting, Is.Zero, "an armed socket is no longer held");
        });
    }

    [Test]
    public void ASocketClosedBeforeItsTurnIsSkippedAndTheOthersAreStillArmed()
    {
        var time = new FakeTimeProvider();
        var keepAlive = new DeferredKeepAlive(Configured, time);
        Socket closed = NewSocket();
        Socket open = NewSocket();
        keepAlive.Add(closed);
        keepAlive.Add(open);
        closed.Dispose(); // the connection ended within a second: the common case

        Assert.DoesNotThrow(() => time.Advance(DeferredKeepAlive.Delay * 2));
        Assert.That(KeepAliveOn(open), Is.True);
    }

    [Test]
    public void ARemovedSocketIsNeitherArmedNorHeld()
    {
        var time = new FakeTimeProvider();
        var keepAlive = new DeferredKeepAlive(Configured, time);
        Socket early = NewSocket();
        Socket kept = NewSocket();
        DeferredKeepAlive.Ticket earlyTicket = keepAlive.Add(early);
        keepAlive.Add(kept);
        time.Advance(DeferredKeepAlive.Delay); // early now waits in the older list
        Socket late = NewSocket();
        DeferredKeepAlive.Ticket lateTicket = keepAlive.Add(late);

        keepAlive.Remove(earlyTicket); // its connection ended: the owner takes it out before closing it
        keepAlive.Remove(lateTicket);
        Assert.That(keepAlive.Waiting, Is.EqualTo(1), "only the socket still open is held");

        time.Advance(DeferredKeepAlive.Delay * 2);
        Assert.Multiple(() =>
        {
            Assert.That(KeepAliveOn(kept), Is.True, "the others are armed as before");
            Assert.That(KeepAliveOn(early), Is.False, "removed from the older list");
            Assert.That(KeepAliveOn(late), Is.False, "removed from the current list");
        });
    }

    [Test]
    public void ATicketFromAnEarlierPeriodOrNoneRemovesNothingElse()
    {
        var time = new FakeTimeProvider();
        var keepAlive = new DeferredKeepAlive(Configured, time);
        DeferredKeepAlive.Ticket old = keepAlive.Add(NewSocket());
        time.Advance(DeferredKeepAlive.Delay * 2); // armed: its ticket is spent
        Socket next = NewSocket();
        DeferredKeepAlive.Ticket current = keepAlive.Add(next);
        Assert.That(current.Index, Is.EqualTo(old.Index), "the same index: only the period tells them apart");

        keepAlive.Remove(old);
        keepAlive.Remove(default);
        time.Advance(DeferredKeepAlive.Delay * 2);
        Assert.That(KeepAliveOn(next), Is.True, "a spent ticket does not take out the socket now in its place");
    }

    [Test]
    public void NothingIsHeldOrSetWhenKeepAliveIsOff()
    {
        var time = new FakeTimeProvider();
        var keepAlive = new DeferredKeepAlive(TcpKeepAlive.Off, time);
        Socket socket = NewSocket();
        keepAlive.Add(socket);
        time.Advance(DeferredKeepAlive.Delay * 3);

        Assert.Multiple(() =>
        {
            Assert.That(keepAlive.Waiting, Is.Zero);
            Assert.That(KeepAliveOn(socket), Is.False);
        });
    }

    [Test]
    public void TheTimerStopsWhenNothingWaitsAndStartsAgainForTheNextSocket()
    {
        var time = new FakeTimeProvider();
        var keepAlive = new DeferredKeepAlive(Configured, time);
        Assert.That(keepAlive.TimerRunning, Is.False, "no timer before the first socket");
        keepAlive.Add(NewSocket());
        Assert.That(keepAlive.TimerRunning, Is.True);
        time.Advance(DeferredKeepAlive.Delay * 2); // armed at the second tick
        Assert.That(keepAlive.TimerRunning, Is.True, "stopping waits for a tick that finds nothing");
        time.Advance(DeferredKeepAlive.Delay);
        Assert.That(keepAlive.TimerRunning, Is.False, "a quiet gateway holds no timer");

        Socket next = NewSocket();
        keepAlive.Add(next);
        time.Advance(DeferredKeepAlive.Delay * 2);
        Assert.Multiple(() =>
        {
            Assert.That(KeepAliveOn(next), Is.True, "the timer started again");
            Assert.That(keepAlive.TimerRunning, Is.True);
        });
    }

    // The kernel keeps keepalive settings on any TCP socket, connected or not: none is needed for reading them back.
    private Socket NewSocket()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _sockets.Add(socket);
        return socket;
    }

    private static bool KeepAliveOn(Socket socket) =>
        (int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive)! != 0;
}
