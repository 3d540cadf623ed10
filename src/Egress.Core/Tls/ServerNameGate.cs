using System.Buffers;
using System.Net;
using Egress.Policy;
using Egress.Relay;

namespace Egress.Tls;

/// <summary>
/// The server-name check of one connection to a DNS-learned address (<see cref="TlsServerNameMode"/>), as the relay's
/// <see cref="IFirstBytesGate"/>: it reads the client's first bytes until <see cref="ClientHelloParser"/> decides
/// (at most <see cref="ClientHelloParser.MaxBytes"/>), and <see cref="ServerNameCheck"/> allows or refuses them. Both
/// hosts use it, the enclave on the application's socket and the parent on the tunnel stream. After the relay,
/// <see cref="Refusal"/> and <see cref="ServerName"/> say what was decided, for the host's log line and metric.
/// </summary>
internal sealed class ServerNameGate : IFirstBytesGate
{
    private readonly Func<string, bool> _isAllowed;
    private readonly int _port; // the destination's, for a refusal's text; 0 in tests

    private readonly TimeProvider _time;

    private ServerNameGate(
        TlsServerNameMode mode, IReadOnlyList<string> learnedNames, Func<string, bool> isAllowed, TimeProvider time, bool reportOnly = false, int port = 0)
    {
        _time = time;
        _port = port;
        ReportOnly = reportOnly;
        Mode = mode;
        LearnedNames = learnedNames;
        _isAllowed = isAllowed;
    }

    /// <summary>How long a client that has sent the start of its ClientHello has for the rest (one flight, normally one
    /// or two segments): 10 s. The wait for its first byte is not bounded here: a client that sends nothing waits as it
    /// would on any connection (the relay's idle timeout).</summary>
    public static readonly TimeSpan ClientHelloTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Whether a refusal is only reported (<c>egress.mode = "report"</c>): the bytes are relayed anyway, and
    /// <see cref="Refusal"/> says what enforce would have refused.</summary>
    public bool ReportOnly { get; }

    /// <summary>The mode it enforces.</summary>
    public TlsServerNameMode Mode { get; }

    /// <summary>The names the destination address was learned from, when the connection was allowed.</summary>
    public IReadOnlyList<string> LearnedNames { get; }

    /// <summary>Why the first bytes were refused; <see cref="ServerNameRefusal.None"/> when they were not (or not yet read).</summary>
    public ServerNameRefusal Refusal { get; private set; }

    /// <summary>The ClientHello's server name (lower case); null when there was none or no ClientHello.</summary>
    public string? ServerName { get; private set; }

    /// <summary>
    /// The gate for a connection to <paramref name="destination"/> allowed by <paramref name="decision"/>: one when the
    /// decision is a learned address and the policy's mode is not <see cref="TlsServerNameMode.Off"/>; null otherwise
    /// (address, network and <c>*</c> entries are not checked). The server name must be allowed by an entry that
    /// allows the destination's port: an address that two names share, allowed on a port through one of them, is not
    /// reachable on that port under the other's name (<c>www.a.test:9000</c> does not open <c>other.a.test</c> on 9000).
    /// </summary>
    /// <param name="policy">The policy that allowed the connection.</param>
    /// <param name="destination">The connection's destination.</param>
    /// <param name="decision">The policy's decision for it.</param>
    /// <param name="time">The clock of <see cref="ClientHelloTimeout"/>; null: the system's.</param>
    public static ServerNameGate? For(EgressPolicy policy, IPEndPoint destination, PolicyDecision decision, TimeProvider? time = null) =>
        Applies(policy, decision) ? Checking(policy, destination, decision, time ?? TimeProvider.System) : null;

    /// <summary>
    /// Whether a connection allowed for <paramref name="reason"/> is server-name checked under <paramref name="policy"/>:
    /// the rule of <see cref="For"/>, which <c>egress-enclave check</c> states from too. Only an address learned from an
    /// allowed name is checked (<see cref="DecisionReason.Learned"/>, <see cref="DecisionReason.LearnedInGrace"/>,
    /// <see cref="DecisionReason.LearnedInUse"/>), and only when the mode is not <see cref="TlsServerNameMode.Off"/>;
    /// a connection allowed by an address, network or <c>*</c> entry is not. In report mode a connection enforce would
    /// deny (<paramref name="wouldDeny"/>) is read too, and only reported: what its ClientHello names decides which
    /// entry report-to-allowlist proposes (a trial: such connections were relayed unread, and the names proposed for
    /// them let enforce refuse their ClientHellos, without a line to say so).
    /// </summary>
    internal static bool Applies(EgressPolicy policy, DecisionReason reason, bool wouldDeny = false) =>
        policy.TlsServerName != TlsServerNameMode.Off
        && (wouldDeny || reason is DecisionReason.Learned or DecisionReason.LearnedInGrace or DecisionReason.LearnedInUse);

    /// <summary>Whether the connection <paramref name="decision"/> allowed is server-name checked (or, for a would-deny,
    /// read and reported): <see cref="Applies(EgressPolicy, DecisionReason, bool)"/>.</summary>
    internal static bool Applies(EgressPolicy policy, PolicyDecision decision) => Applies(policy, decision.Reason, decision.WouldDeny);

    /// <summary>The gate itself, apart from <see cref="For"/>: its name check's closure is allocated only for a connection
    /// that is checked (a lambda in <see cref="For"/> allocated its captures on every call, checked or not).</summary>
    private static ServerNameGate Checking(EgressPolicy policy, IPEndPoint destination, PolicyDecision decision, TimeProvider time) =>
        new(policy.TlsServerName, policy.LearnedNamesOf(destination.Address, decision.LearnedName), name => policy.CheckNamePort(name, destination.Port) is (_, true), time, policy.Mode == EgressMode.Report, destination.Port);

    /// <summary>A gate over fixed names, for tests.</summary>
    internal static ServerNameGate Create(
        TlsServerNameMode mode, IReadOnlyList<string> learnedNames, Func<string, bool> isAllowed, bool reportOnly = false, TimeProvider? time = null) =>
        new(mode, learnedNames, isAllowed, time ?? TimeProvider.System, reportOnly);

    /// <summary>The learned names for a log line: <c>www.example.com, example.com</c>; <c>(none)</c> for a connection
    /// report mode allowed to an address never learned (a trial read "learned from ,").</summary>
    public string LearnedNamesText => LearnedNames.Count == 0 ? "(none)" : string.Join(", ", LearnedNames);

    /// <summary>The refusal for a log line, e.g. <c>server name evil.test is not a name the address was learned from</c>.</summary>
    public string RefusalText => Refusal switch
    {
        ServerNameRefusal.NotLearned => $"server name {ServerName} is not a name the address was learned from",
        // The port named: an entry may allow the name on other ports only (a new user's trial read "by any entry" as
        // the name missing from the list). The text up to "entry" is what report-to-allowlist reads.
        ServerNameRefusal.NotAllowed => _port > 0 ? $"server name {ServerName} is not allowed by any entry on port {_port}" : $"server name {ServerName} is not allowed by any entry",
        ServerNameRefusal.NoServerName => "the ClientHello has no server name",
        ServerNameRefusal.EncryptedClientHello => "the ClientHello uses encrypted_client_hello, which hides the server name",
        ServerNameRefusal.Malformed => "the first bytes are TLS records but not a well-formed ClientHello",
        ServerNameRefusal.TooLarge => $"the ClientHello is larger than {ClientHelloParser.MaxHandshakeLength / 1024} KiB",
        ServerNameRefusal.Truncated => "the client closed in the middle of its ClientHello",
        ServerNameRefusal.TimedOut => $"the client sent the start of a ClientHello and not the rest within {ClientHelloTimeout.TotalSeconds:F0} s",
        _ => "not refused",
    };

    /// <summary>The mode as the configuration writes it, for a log line.</summary>
    public string ModeText => Configuration.ConfigurationChoices.TlsServerName.TextOf(Mode);

    /// <summary>
    /// Decides on first bytes already received, without reading more: the enclave's check of a ClientHello that was
    /// queued when it accepted the connection, before any tunnel stream is opened (an allowed one then goes to the parent
    /// as early data; a refused one is never sent, and no destination is dialled). Sets <see cref="Refusal"/> and
    /// <see cref="ServerName"/> as <see cref="InspectAsync"/> does for the same bytes.
    /// </summary>
    /// <param name="first">The connection's first bytes, as many as were there (not more than <see cref="ClientHelloParser.MaxBytes"/>).</param>
    /// <returns>Null when they do not decide yet (the start of a ClientHello: the relay's <see cref="InspectAsync"/>
    /// reads on from them); true to relay them (allowed, or refused only in report mode); false to refuse them.</returns>
    public bool? TryDecide(ReadOnlySpan<byte> first)
    {
        ClientHelloStatus status = ClientHelloParser.Parse(first, out ClientHello hello);
        return status == ClientHelloStatus.NeedMore ? null : Decide(status, hello);
    }

    /// <summary>Records the check's answer to a parsed first flight (<see cref="ServerNameCheck.Decide"/>): whether its
    /// bytes are relayed (not refused, or only reported).</summary>
    private bool Decide(ClientHelloStatus status, ClientHello hello)
    {
        ServerName = hello.ServerName;
        Refusal = ServerNameCheck.Decide(Mode, status, hello, LearnedNames, _isAllowed, ReportOnly);
        return Refusal == ServerNameRefusal.None || ReportOnly;
    }

    /// <inheritdoc/>
    public async ValueTask<FirstBytes> InspectAsync(Func<Memory<byte>, CancellationToken, ValueTask<int>> receive, CancellationToken cancellationToken)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(ClientHelloParser.MaxBytes);
        CancellationTokenSource? rest = null; // the ClientHello's deadline, from its first bytes
        CancellationTokenRegistration onCancel = default;
        try
        {
            int filled = 0;
            ClientHelloScan scan = default; // the parse goes on from the last whole record, not from the first byte
            ClientHelloStatus status;
            ClientHello hello;
            while (true)
            {
                int read;
                try
                {
                    read = await receive(buffer.AsMemory(filled, ClientHelloParser.MaxBytes - filled), rest?.Token ?? cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (rest is { IsCancellationRequested: true } && !cancellationToken.IsCancellationRequested)
                {
                    ServerName = null;
                    Refusal = ServerNameRefusal.TimedOut;
                    return ReportOnly ? new FirstBytes(true, buffer.AsSpan(0, filled).ToArray()) : new FirstBytes(false, default);
                }

                if (read == 0)
                {
                    // End of stream: nothing sent passes (the relay forwards the end); a partial ClientHello does not.
                    status = filled == 0 ? ClientHelloStatus.NotTls : ClientHelloStatus.NeedMore;
                    hello = default;
                    break;
                }

                filled += read;
                status = ClientHelloParser.Parse(buffer.AsSpan(0, filled), ref scan, out hello);
                if (status != ClientHelloStatus.NeedMore)
                {
                    break;
                }

                if (filled == ClientHelloParser.MaxBytes)
                {
                    status = ClientHelloStatus.TooLarge;
                    break;
                }

                if (rest is null && Mode != TlsServerNameMode.Off)
                {
                    rest = new CancellationTokenSource(ClientHelloTimeout, _time);
                    onCancel = cancellationToken.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), rest);
                }
            }

            return Decide(status, hello) ? new FirstBytes(true, buffer.AsSpan(0, filled).ToArray()) : new FirstBytes(false, default);
        }
        finally
        {
            onCancel.Dispose();
            rest?.Dispose();
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
