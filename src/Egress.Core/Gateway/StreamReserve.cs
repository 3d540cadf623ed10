using System.Globalization;
using System.Net.Sockets;
using Egress.Connections;
using Egress.Dns;

namespace Egress.Gateway;

/// <summary>
/// The last tunnel streams of <c>host.max_streams</c> kept for DNS and denial-report streams: a relayed connection on
/// a new stream may not take them, so that an app holding connections open up to the limit leaves the enclave's DNS
/// working (a trial held 1,500 connections against 373 streams, and every DNS query of the enclave failed meanwhile).
/// Kept twice when <c>[[host.enclaves]]</c> serves several enclaves: of the whole limit, and of each enclave's share
/// (its DNS streams count toward its share, so an enclave at its share would otherwise have them refused). The streams
/// waiting for the answer to a refusal beyond a share (at most <see cref="ConnectionListener.MaxAnswering"/>) are not
/// counted: they end within the header timeout, and counting them took the reserve out of the other enclaves' quarter.
/// How many: <see cref="DnsStreamLimits.Reserved"/> (an eighth, at most 8; none below 8).
/// </summary>
/// <param name="admission">The stream limit.</param>
/// <param name="share">Each enclave's share, when several are served; null otherwise.</param>
/// <param name="peerCid">The VSOCK peer CID of a stream, null when it has none.</param>
/// <param name="answeringOverShare">How many streams are waiting for the answer to a refusal beyond a share now.</param>
internal sealed class StreamReserve(ConnectionAdmission admission, EnclaveStreamShare? share, Func<Socket, uint?> peerCid, Func<int> answeringOverShare)
{
    private readonly int _reserved = DnsStreamLimits.Reserved(admission.Limit);
    private readonly int _reservedOfShare = share is null ? 0 : DnsStreamLimits.Reserved(share.Share);
    private string? _refusal;

    /// <summary>Why a relayed connection on the new stream <paramref name="stream"/> is refused: it would take a stream
    /// kept for DNS; null when it may go on.</summary>
    public string? RefusalFor(Socket stream)
    {
        if (_reserved > 0 && admission.Admitted - answeringOverShare() > admission.Limit - _reserved)
        {
            return _refusal ??= DnsStreamLimits.ReservedReason(_reserved, admission.LimitText());
        }

        if (_reservedOfShare > 0 && peerCid(stream) is { } cid && share!.Held(cid) > share.Share - _reservedOfShare)
        {
            return string.Create(
                CultureInfo.InvariantCulture,
                $"stream {ConnectionAdmission.LimitReached} for relayed connections of enclave CID {cid}: it holds {share.Held(cid):N0} streams of its share of {share.Share:N0} {admission.LimitText()}, and the last {_reservedOfShare} of it are kept for its DNS and denial reports");
        }

        return null;
    }
}
