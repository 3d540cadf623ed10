namespace Egress.Tunnel;

/// <summary>
/// One line of a denial report: how many denials of one kind, for one reason and one subject, the enclave counted over
/// a period (docs/tunnel-protocol.md, "Denial reports").
/// </summary>
/// <param name="Kind">What was denied.</param>
/// <param name="Reason">Why: a snake_case token, 1 to <see cref="DenialReportCodec.MaxReasonLength"/> characters of
/// <c>a</c>–<c>z</c>, <c>0</c>–<c>9</c> and <c>_</c> (e.g. <c>never_learned</c>, <c>name_not_allowed</c>,
/// <c>not_learned</c>).</param>
/// <param name="Count">How many, at least 1.</param>
/// <param name="Seconds">The period the count covers, in seconds (0 … 65,535; longer periods are sent as 65,535).</param>
/// <param name="Subject">What was denied, as the enclave logs it (<c>198.51.100.7:443</c>, <c>[2001:db8::1]:443</c>,
/// <c>evil.example A</c>, <c>198.51.100.7:443 server name other.example</c>): printable ASCII
/// (0x20–0x7E), at most <see cref="DenialReportCodec.MaxSubjectLength"/> characters; empty when the enclave withholds
/// it (<c>enclave.report_denials = "counts"</c>) or for the denials beyond the subjects one report names.</param>
internal readonly record struct DenialRecord(DenialKind Kind, string Reason, uint Count, ushort Seconds, string Subject);
