using System.Net;
using System.Net.Sockets;
using Egress.Policy;
using Egress.Relay;
using Egress.Sockets;
using Egress.Tls;
using Egress.Tunnel;

namespace Egress.Gateway;

/// <summary>
/// An allowed TCP request whose destination is connected, answered Ok and relayed: what the relay's end needs to log,
/// count and build its <see cref="GatewayStreamResult"/>, and what it releases (<see cref="Dispose"/>).
/// </summary>
/// <remarks>
/// An object of its own, made once the relay has started, rather than the locals of a state machine that waits for the
/// relay: an idle relayed connection then holds this (about 165 B) under the handler's one state machine, instead of a
/// second state machine (320 B, with the dial's awaiter) and the decision's awaiter in the first (issue 15: idle RSS
/// per relayed connection).
/// </remarks>
/// <param name="request">The request.</param>
/// <param name="destination">Its destination, decoded once.</param>
/// <param name="decision">The allowing decision.</param>
/// <param name="hold">The hold that keeps a learned address allowed while the connection is open; null: none.</param>
/// <param name="upstream">The destination socket.</param>
/// <param name="keepAlive">Where the destination socket waits for its keepalive, taken out before it closes.</param>
/// <param name="keepAliveTicket">Its place there.</param>
/// <param name="serverNameGate">The TLS server-name check on the relay's first bytes; null: none.</param>
/// <param name="relay">The running relay.</param>
internal sealed class RelayedStream(
    TunnelRequest request, IPEndPoint destination, PolicyDecision decision, AddressHold? hold, Socket upstream, DeferredKeepAlive keepAlive,
    DeferredKeepAlive.Ticket keepAliveTicket, ServerNameGate? serverNameGate, Task<RelayResult> relay) : IDisposable
{
    private AddressHold? _hold = hold;

    public TunnelRequest Request { get; } = request;

    public IPEndPoint Destination { get; } = destination;

    public PolicyDecision Decision { get; } = decision;

    public ServerNameGate? ServerNameGate { get; } = serverNameGate;

    /// <summary>The relay, which never throws for I/O failures (<see cref="SocketRelay"/>).</summary>
    public Task<RelayResult> Relay { get; } = relay;

    /// <summary>Closes the destination socket (out of the keepalive's list first, if it is still waiting there), then
    /// releases the hold (the learned address's grace starts): the order of the nested <c>using</c> blocks this replaces.</summary>
    public void Dispose()
    {
        keepAlive.Remove(keepAliveTicket);
        SocketReset.CloseGracefully(upstream); // as its relay ended; SO_LINGER 0 is for a process that ends (DestinationDialer)
        Interlocked.Exchange(ref _hold, null)?.Dispose();
    }
}
