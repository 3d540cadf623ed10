using System.Globalization;
using Egress.Diagnostics;

namespace Egress.Dns;

/// <summary>
/// The bounds of tunnel DNS streams on the parent, in one place: how many may be open at once (a small share of the
/// stream limit, so that DNS streams can never take the descriptors TCP streams need: the enclave's forwarder keeps a
/// pool of 2 to 16; at the limit a new stream takes the place of the one idle longest, <see cref="DnsStreamSlots"/>), how many queries each answers at once (beyond that: SERVFAIL at once, never a queue), and how
/// long one may stay idle or take over one frame. The enclave's side of the same contract:
/// <see cref="Forwarder.DnsTunnelPool"/> closes its own idle streams before <see cref="IdleTimeout"/>, and
/// <see cref="Forwarder.DnsQueryAdmission"/> sends each stream far fewer queries than <see cref="MaxInFlight"/>.
/// </summary>
internal static class DnsStreamLimits
{
    /// <summary>The most queries one tunnel DNS stream has answered at once; a further one is answered SERVFAIL.</summary>
    public const int MaxInFlight = 1024;

    /// <summary>The most queries being answered over all tunnel DNS streams of one enclave (each <c>[[host.enclaves]]</c>
    /// entry, or the one enclave, has its own), beyond each stream's first <see cref="ReservedPerStream"/>: each holds
    /// its query (up to 64 KiB) and an answer buffer of 64 KiB while its answer is computed, so these hold at most
    /// 256 MiB; the enclave sends at most 512 with its default 2 streams (<see cref="Forwarder.DnsQueryAdmission.PerStream"/>
    /// each). A place goes back once the answer is computed: an answer waiting for its stream's peer to read it is
    /// charged to that stream (<see cref="DnsFramedConnection.MaxUnwrittenBytes"/>, 1 MiB while the peer takes nothing,
    /// plus the answer being written and its copy in the stream's writer, at most 128 KiB), so streams that never read
    /// cannot hold these places. Over <see cref="MaxStreamsCap"/> streams, the most one enclave's DNS streams hold on the
    /// parent is about 256 MiB + 256 x 8 x 128 KiB (the reserved places, 256 MiB) + 256 x 1.2 MiB, about 810 MiB,
    /// reached only by code in the enclave that opens 256 streams, keeps 2,048 + 2,048 large queries for slowly answered
    /// names in flight and reads no answer.</summary>
    public const int MaxInFlightPerGateway = 2048;

    /// <summary>The queries in flight on each tunnel DNS stream that take no place of <see cref="MaxInFlightPerGateway"/>:
    /// code in the enclave that fills the shared places with slowly answered allowed names on streams of its own (a
    /// red-team trial: 56 % of an app's queries failed) leaves the forwarder's streams 8 queries in flight each (16
    /// with its default 2 streams). Up to 256 x 8 more queries may then be in flight upstream per enclave.</summary>
    public const int ReservedPerStream = 8;

    /// <summary>The fewest tunnel DNS streams allowed at once, whatever the stream limit: the enclave opens up to 16.</summary>
    public const int MinStreams = 16;

    /// <summary>The most tunnel DNS streams allowed at once, whatever the stream limit.</summary>
    public const int MaxStreamsCap = 256;

    /// <summary>How long a tunnel DNS stream may go without a query before the parent closes it. The enclave closes
    /// its own idle streams after half of it (<see cref="EnclaveIdleTimeout"/>), so it never sends a query on a
    /// stream the parent is closing.</summary>
    public static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(60);

    /// <summary>How long the enclave keeps a tunnel DNS stream without a query before closing it itself.</summary>
    public static readonly TimeSpan EnclaveIdleTimeout = TimeSpan.FromSeconds(30);

    /// <summary>The most tunnel DNS streams open at once: an eighth of the stream limit (<c>host.max_streams</c>,
    /// configured or derived), between <see cref="MinStreams"/> and 256; 256 without a limit.</summary>
    /// <param name="streamLimit">The gateway's stream limit, or null for none.</param>
    public static int MaxStreams(int? streamLimit) =>
        streamLimit is { } limit ? Math.Clamp(limit / 8, MinStreams, MaxStreamsCap) : MaxStreamsCap;

    /// <summary>The most streams kept back from relayed connections for DNS and denial-report streams.</summary>
    public const int MaxReserved = 8;

    /// <summary>The streams of the limit kept for DNS and denial-report streams: a new stream's first TCP connection is
    /// refused while the streams open number more than the limit less these, so that relayed connections at the limit
    /// (an app holding connections open; a trial held 1,500 against 373) leave the enclave's DNS working. An eighth of
    /// the limit, at most <see cref="MaxReserved"/> (an enclave keeps 2 DNS streams by default, up to 16); none below
    /// 8 streams.</summary>
    /// <param name="streamLimit">The gateway's stream limit, or null for none.</param>
    public static int Reserved(int? streamLimit) => streamLimit is { } limit ? Math.Min(MaxReserved, limit / 8) : 0;

    /// <summary>Why a relayed connection is refused on a new stream that would take one of the streams kept for DNS.</summary>
    /// <param name="reserved">The streams kept (<see cref="Reserved"/>).</param>
    /// <param name="streamLimitText">The stream limit, as <see cref="Connections.ConnectionAdmission.LimitText"/> says it.</param>
    public static string ReservedReason(int reserved, string streamLimitText) => string.Create(
        CultureInfo.InvariantCulture,
        $"stream {Connections.ConnectionAdmission.LimitReached} for relayed connections {streamLimitText}: {(reserved == 1 ? "the last stream is" : $"the last {reserved} streams are")} kept for DNS and denial reports");

    /// <summary>Why a tunnel DNS stream beyond <see cref="MaxStreams"/> is refused.</summary>
    /// <param name="maxStreams">The limit reached.</param>
    /// <param name="streamLimitText">The stream limit it derives from, as <see cref="Connections.ConnectionAdmission.LimitText"/> says it.</param>
    public static string RefusalReason(int maxStreams, string? streamLimitText) => string.Create(
        CultureInfo.InvariantCulture,
        $"dns stream {Connections.ConnectionAdmission.LimitReached} ({maxStreams} DNS streams at once: an eighth of the stream limit {streamLimitText ?? "(none)"}, at least {MinStreams})");

    /// <summary>The options every tunnel DNS stream of one gateway is served with.</summary>
    public static DnsStreamOptions StreamOptions(TimeProvider time, EgressMetrics? metrics) => new()
    {
        MaxInFlight = MaxInFlight,
        AnswerOverflow = true,
        SharedLimit = new DnsInFlightLimit(MaxInFlightPerGateway),
        ReservedPerStream = ReservedPerStream,
        IdleTimeout = IdleTimeout,
        TimeProvider = time,
        Metrics = metrics,
    };
}
