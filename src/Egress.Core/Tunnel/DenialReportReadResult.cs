namespace Egress.Tunnel;

/// <summary>The outcome of reading one record of a denial report (<see cref="DenialReportCodec.TryReadRecord"/>).</summary>
internal enum DenialReportReadResult
{
    /// <summary>A whole record was read.</summary>
    Complete,

    /// <summary>The end byte was read: the report is whole.</summary>
    End,

    /// <summary>More bytes are needed; nothing wrong has been seen so far.</summary>
    Incomplete,

    /// <summary>The record's count is 0.</summary>
    ZeroCount,

    /// <summary>The reason is empty, longer than <see cref="DenialReportCodec.MaxReasonLength"/>, or holds a byte other
    /// than <c>a</c>–<c>z</c>, <c>0</c>–<c>9</c> or <c>_</c>.</summary>
    BadReason,

    /// <summary>The subject is longer than <see cref="DenialReportCodec.MaxSubjectLength"/> or holds a byte outside printable ASCII.</summary>
    BadSubject,
}
