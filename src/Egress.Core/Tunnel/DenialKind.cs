namespace Egress.Tunnel;

/// <summary>What a <see cref="DenialRecord"/> counts (docs/tunnel-protocol.md, "Denial reports"). A reader keeps a kind
/// it does not know (the record's layout does not depend on it) and names it by its number.</summary>
internal enum DenialKind : byte
{
    /// <summary>TCP connections the enclave's policy denied; the reason is a <see cref="Policy.DecisionReason"/> in snake_case.</summary>
    Connection = 1,

    /// <summary>DNS questions the enclave's policy refused (answered NXDOMAIN); the reason is a <see cref="Policy.DecisionReason"/>.</summary>
    DnsQuestion = 2,

    /// <summary>TLS connections the enclave reset because the ClientHello's server name failed the check
    /// (<c>egress.tls_server_name</c>); the reason is a <see cref="Tls.ServerNameRefusal"/> in snake_case.</summary>
    ServerName = 3,

    /// <summary>Not a denial: the enclave's policy digest, so that the parent can say when the two sides read different
    /// policies. The first record of every report; count 1, reason <see cref="DenialReportCodec.PolicyReason"/>, the
    /// subject <c>sha256:</c> and the 64 lower-case hexadecimal digits of <see cref="Configuration.PolicyDigest.Hash"/>.</summary>
    PolicyDigest = 4,
}
