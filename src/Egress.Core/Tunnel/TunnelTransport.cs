namespace Egress.Tunnel;

/// <summary>The kind of socket a <see cref="TunnelEndpoint"/> names.</summary>
public enum TunnelTransport
{
    /// <summary>AF_VSOCK, <c>vsock://CID:PORT</c>: between a Nitro Enclave and its parent instance.</summary>
    Vsock,

    /// <summary>A Unix domain socket, <c>unix:/path</c>: a stand-in for VSOCK on one machine.</summary>
    Unix,

    /// <summary>TCP to an IP literal, <c>tcp://HOST:PORT</c>: a stand-in for VSOCK in tests.</summary>
    Tcp,
}
