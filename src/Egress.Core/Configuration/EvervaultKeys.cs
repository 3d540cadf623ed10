namespace Egress.Configuration;

/// <summary>
/// The top-level keys and tables of Evervault's <c>enclave.toml</c> (and its older <c>cage.toml</c>) that Egress does not
/// use: they are accepted, their values are not read. Taken from the <c>EnclaveConfig</c> type of evervault-cli.
/// </summary>
internal static class EvervaultKeys
{
    /// <summary>The names, sorted.</summary>
    public static readonly string[] Names =
    [
        "api_key_auth", "app_uuid", "attestation", "debug", "disable_tls_termination", "dockerfile",
        "forward_proxy_protocol", "healthcheck", "name", "reproducible", "runtime", "scaling", "service",
        "signing", "team_uuid", "tls_termination", "trusted_headers", "trx_logging", "uuid", "version",
    ];

    /// <summary>Whether <paramref name="key"/> is one of Evervault's top-level keys or tables.</summary>
    public static bool Contains(string key) => Array.BinarySearch(Names, key, StringComparer.Ordinal) >= 0;
}
