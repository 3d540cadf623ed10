using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Egress.Connections;

/// <summary>
/// Decides whether an accepted connection is served: at most a number of connections at once (configured, or derived
/// from the descriptor budget), and only while the budget has the descriptors the connection holds. Shared by every
/// listener of one service (the proxy's IPv4 and IPv6 listeners count together).
/// </summary>
internal sealed class ConnectionAdmission
{
    /// <summary>What a relayed connection holds for its whole life on either host (measured: the accepted socket and
    /// the socket it is relayed to; splice pipes are taken from the budget separately, only while data flows).</summary>
    public const int DescriptorsPerConnection = 2;

    private readonly DescriptorBudget _budget;
    private readonly string _setting;
    private readonly string _noun;
    private readonly bool _derived;
    private int _admitted;
    private string? _limitReason;

    /// <summary>Creates the admission of one service.</summary>
    /// <param name="configured">The configured limit; 0 derives it from the budget (<see cref="DerivedLimit"/>).</param>
    /// <param name="setting">The configuration key that sets the limit, named in refusals (e.g. <c>enclave.max_connections</c>).</param>
    /// <param name="noun">What is admitted, for refusals: "connection" or "stream".</param>
    /// <param name="budget">The process's descriptors (<see cref="DescriptorBudget.Process"/> in production).</param>
    public ConnectionAdmission(int configured, string setting, string noun, DescriptorBudget budget)
    {
        _budget = budget;
        _setting = setting;
        _noun = noun;
        _derived = configured <= 0;
        Limit = _derived ? DerivedLimit(budget) : configured;
    }

    /// <summary>Gets the most connections served at once.</summary>
    public int Limit { get; }

    /// <summary>Gets the connections admitted and not yet released.</summary>
    public int Admitted => Volatile.Read(ref _admitted);

    /// <summary>The default limit: as many connections as the budget holds at <see cref="DescriptorsPerConnection"/> each.</summary>
    public static int DerivedLimit(DescriptorBudget budget) =>
        (int)Math.Min(int.MaxValue, Math.Max(1, budget.Capacity / DescriptorsPerConnection));

    /// <summary>The metric reason of a refusal at the limit (<c>egress.reason</c>).</summary>
    public const string LimitMetricReason = "connection_limit";

    /// <summary>The metric reason of a refusal for want of descriptors (<c>egress.reason</c>).</summary>
    public const string DescriptorMetricReason = "descriptor_limit";

    /// <summary>Admits a connection (release it with <see cref="Release"/>), or says why not.</summary>
    /// <param name="refusal">Why the connection is refused, naming the limit; null when admitted.</param>
    public bool TryAdmit([NotNullWhen(false)] out string? refusal) => TryAdmit(out refusal, out _);

    /// <summary>Admits a connection (release it with <see cref="Release"/>), or says why not, in words and as a metric
    /// reason.</summary>
    /// <param name="refusal">Why the connection is refused, naming the limit; null when admitted.</param>
    /// <param name="metricReason"><see cref="LimitMetricReason"/> or <see cref="DescriptorMetricReason"/>; null when admitted.</param>
    public bool TryAdmit([NotNullWhen(false)] out string? refusal, [NotNullWhen(false)] out string? metricReason)
    {
        if (Interlocked.Increment(ref _admitted) > Limit)
        {
            Interlocked.Decrement(ref _admitted);
            refusal = LimitReason();
            metricReason = LimitMetricReason;
            return false;
        }

        if (!_budget.TryTake(DescriptorsPerConnection))
        {
            Interlocked.Decrement(ref _admitted);
            refusal = _budget.ExhaustedReason();
            metricReason = DescriptorMetricReason;
            return false;
        }

        refusal = null;
        metricReason = null;
        return true;
    }

    /// <summary>Ends an admitted connection: its place and its descriptors are free again.</summary>
    public void Release()
    {
        _budget.Release(DescriptorsPerConnection);
        Interlocked.Decrement(ref _admitted);
    }

    /// <summary>The limit as refusals name it: "(enclave.max_connections = 5)" or "(… = 224, derived from RLIMIT_NOFILE = 512)".</summary>
    public string LimitText() => _derived
        ? string.Create(CultureInfo.InvariantCulture, $"({_setting} = {Limit}, derived from RLIMIT_NOFILE = {_budget.OpenFileLimit})")
        : string.Create(CultureInfo.InvariantCulture, $"({_setting} = {Limit})");

    /// <summary>The limit as the start-up line names it: "enclave.max_connections = 5" or "… = 224 (derived from
    /// RLIMIT_NOFILE = 512)".</summary>
    public string SettingText() => _derived
        ? string.Create(CultureInfo.InvariantCulture, $"{_setting} = {Limit} (derived from RLIMIT_NOFILE = {_budget.OpenFileLimit})")
        : string.Create(CultureInfo.InvariantCulture, $"{_setting} = {Limit}");

    /// <summary>The limit refusal, built at the first refusal and then kept (the limit and its source do not change): a
    /// flood of refused connections allocates no text per connection.</summary>
    private string LimitReason() => _limitReason ??= $"{_noun} {LimitReached} {LimitText()}";

    /// <summary>What every limit refusal's reason says (this one's, the DNS stream limit's, the descriptor budget's), by
    /// which the enclave tells the parent's limit answers from its other Failure answers.</summary>
    internal const string LimitReached = "limit reached";
}
