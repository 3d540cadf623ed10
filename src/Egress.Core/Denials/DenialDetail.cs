namespace Egress.Denials;

/// <summary>How much of what the enclave denied it tells the parent (<c>enclave.report_denials</c>; docs/configuration.md).</summary>
internal enum DenialDetail
{
    /// <summary><c>"destinations"</c> (the default): counts by kind, reason and destination (the address and port, the
    /// DNS name and type, the TLS server name).</summary>
    Destinations,

    /// <summary><c>"counts"</c>: counts by kind and reason only; no address or name leaves the enclave.</summary>
    Counts,

    /// <summary><c>"off"</c>: nothing is reported; the enclave's denials stay in its own log.</summary>
    Off,
}
