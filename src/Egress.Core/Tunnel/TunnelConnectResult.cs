using System.Net.Sockets;

namespace Egress.Tunnel;

/// <summary>The result of <see cref="TunnelClient.ConnectAsync"/>.</summary>
public sealed class TunnelConnectResult
{
    internal TunnelConnectResult(
        TunnelConnectError error, TunnelStatus? status, string? detail, Socket? socket, ReadOnlyMemory<byte> receivedAfterStatus)
    {
        Error = error;
        Status = status;
        Detail = detail;
        Socket = socket;
        ReceivedAfterStatus = receivedAfterStatus;
    }

    /// <summary>Gets why there is no connected stream; <see cref="TunnelConnectError.None"/> when there is one.</summary>
    public TunnelConnectError Error { get; }

    /// <summary>Gets the parent's status when it answered (Ok, or the refusal); null when no answer was read.</summary>
    public TunnelStatus? Status { get; }

    /// <summary>
    /// Gets the detail: the parent's text with its status (e.g. why it denied), the socket error's message, the
    /// header defect for <see cref="TunnelConnectError.BadResponse"/>, or, for <see cref="TunnelConnectError.TunnelTimedOut"/>
    /// and <see cref="TunnelConnectError.StatusTimedOut"/>, the parent's endpoint and how long was waited (milliseconds);
    /// null when there is none (the parent's Ok or refusal without a text).
    /// </summary>
    public string? Detail { get; }

    /// <summary>
    /// Gets the connected stream on success (owned by the caller, who disposes it); null otherwise. Its bytes are the
    /// destination's, after <see cref="ReceivedAfterStatus"/>.
    /// </summary>
    public Socket? Socket { get; }

    /// <summary>
    /// Gets the destination's first bytes that arrived in the same receive as the status (e.g. an SMTP banner); they
    /// come before anything read from <see cref="Socket"/>. Empty when none did.
    /// </summary>
    public ReadOnlyMemory<byte> ReceivedAfterStatus { get; }

    /// <summary>Gets the header defect for <see cref="TunnelConnectError.BadResponse"/>; Complete otherwise.</summary>
    internal TunnelReadResult ReadResult { get; init; } = TunnelReadResult.Complete;

    /// <summary>Gets the protocol version the connected stream speaks: 1 (raw bytes) or 2 (frames).</summary>
    internal byte Version { get; init; } = TunnelCodec.Version;

    /// <summary>Gets the connection id the request carried (version 2; 0 otherwise), also of a refusal.</summary>
    internal ulong ConnectionId { get; init; }

    /// <summary>Gets the version of the parent's refusal (<see cref="TunnelConnectError.Refused"/>).</summary>
    internal byte ResponseVersion { get; init; }

    /// <summary>Gets what this connect learned about the parent's version, for the enclave's log.</summary>
    internal TunnelVersionNews VersionNews { get; init; }

    /// <summary>Gets whether the request went on a pooled stream that had carried an earlier connection (<see cref="TunnelStreamPool"/>).</summary>
    internal bool Reused { get; init; }

    /// <summary>Gets whether a pooled stream was found closed by the parent before any status byte, and the request was
    /// sent again on a new stream (this result is the new stream's).</summary>
    internal bool RetriedStale { get; init; }

    /// <summary>This result with <see cref="VersionNews"/> set.</summary>
    internal TunnelConnectResult With(TunnelVersionNews news) => news == VersionNews ? this : Copy(news, Reused, RetriedStale);

    /// <summary>This result with <see cref="Reused"/> and <see cref="RetriedStale"/> set.</summary>
    internal TunnelConnectResult With(bool reused, bool retriedStale) => Copy(VersionNews, reused, retriedStale);

    private TunnelConnectResult Copy(TunnelVersionNews news, bool reused, bool retriedStale) =>
        new(Error, Status, Detail, Socket, ReceivedAfterStatus)
        {
            ReadResult = ReadResult,
            Version = Version,
            ConnectionId = ConnectionId,
            ResponseVersion = ResponseVersion,
            VersionNews = news,
            Reused = reused,
            RetriedStale = retriedStale,
        };

    internal static TunnelConnectResult Failed(TunnelConnectError error, string? detail) => new(error, null, detail, null, default);

    /// <inheritdoc />
    public override string ToString() => Error switch
    {
        TunnelConnectError.None => "connected",
        TunnelConnectError.Refused => Detail is null ? $"refused: {Status}" : $"refused: {Status} ({Detail})",
        _ => Detail is null ? Error.ToString() : $"{Error}: {Detail}",
    };
}
