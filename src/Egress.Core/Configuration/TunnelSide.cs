namespace Egress.Configuration;

/// <summary>Which end of the tunnel a host is.</summary>
public enum TunnelSide
{
    /// <summary>egress-enclave: connects to the tunnel endpoint.</summary>
    Enclave,

    /// <summary>egress-host: listens on the tunnel endpoint.</summary>
    Host,
}
