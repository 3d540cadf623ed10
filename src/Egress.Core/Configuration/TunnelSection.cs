namespace Egress.Configuration;

/// <summary>The <c>[tunnel]</c> section: how egress-enclave reaches egress-host.</summary>
public sealed class TunnelSection
{
    internal TunnelSection(string enclaveEndpoint, string hostEndpoint, TimeSpan statusTimeout)
    {
        EnclaveEndpoint = enclaveEndpoint;
        HostEndpoint = hostEndpoint;
        StatusTimeout = statusTimeout;
    }

    /// <summary>Gets the endpoint egress-enclave connects to (<c>tunnel.enclave_endpoint</c>, default <c>vsock://3:4433</c>), unvalidated.</summary>
    public string EnclaveEndpoint { get; }

    /// <summary>Gets the endpoint egress-host listens on (<c>tunnel.host_endpoint</c>, default <c>vsock://any:4433</c>), unvalidated.</summary>
    public string HostEndpoint { get; }

    /// <summary>
    /// Gets how long the enclave waits for the parent's status byte (<c>tunnel.status_timeout_ms</c>, default 10 s);
    /// always longer than <see cref="HostSection.ConnectTimeout"/>.
    /// </summary>
    public TimeSpan StatusTimeout { get; }
}
