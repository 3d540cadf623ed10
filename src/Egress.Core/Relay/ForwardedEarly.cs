namespace Egress.Relay;

/// <summary>
/// Bytes of side A that went to the tunnel before the relay started (egress-enclave's early data: the application's
/// first bytes, sent as a DATA frame with the version 2 request). The relay counts them in
/// <see cref="RelayResult.BytesAToB"/> and, when the read that took them left A empty, waits for A's next bytes
/// without first trying to read.
/// </summary>
/// <param name="Bytes">How many bytes were forwarded (0: none).</param>
/// <param name="SourceDrained">The read that took them came back short: A had nothing more queued then.</param>
internal readonly record struct ForwardedEarly(int Bytes, bool SourceDrained);
