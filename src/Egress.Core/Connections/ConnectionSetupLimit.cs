using System.Globalization;

namespace Egress.Connections;

/// <summary>
/// The most connections a listener has accepted and not yet set up (for the proxy: original destination read, policy
/// checked, tunnel stream opened and the parent's status received), over all listeners that share it. A listener
/// takes a place for each connection it admits and, while none is free, waits and accepts no more, so that a flood of connections waits in the
/// kernel's listen backlog, where it costs the process nothing, instead of being accepted thousands at once and set
/// up concurrently (every setup's socket events then queue on the runtime's socket engine thread and the thread pool,
/// in front of everything else the process does). The connection gives its place back once set up
/// (<see cref="ConnectionSetup.Complete"/>), or when refused or ended.
/// </summary>
internal sealed class ConnectionSetupLimit
{
    /// <summary>Connections set up at once per processor when the limit is derived.</summary>
    public const int DerivedPerProcessor = 32;

    /// <summary>The smallest derived limit.</summary>
    public const int MinDerived = 16;

    private readonly SemaphoreSlim _places;
    private readonly string _setting;
    private readonly bool _derived;
    private long _waits;

    /// <summary>Creates the limit of one service.</summary>
    /// <param name="configured">The configured limit; 0 derives it (<see cref="DerivedLimit"/>).</param>
    /// <param name="setting">The configuration key that sets it, for logs (e.g. <c>enclave.max_pending_connections</c>).</param>
    public ConnectionSetupLimit(int configured, string setting)
    {
        _setting = setting;
        _derived = configured <= 0;
        Limit = _derived ? DerivedLimit(Environment.ProcessorCount) : configured;
        _places = new SemaphoreSlim(Limit, Limit);
    }

    /// <summary>Gets the most connections being set up at once.</summary>
    public int Limit { get; }

    /// <summary>Gets the connections that hold a place: accepted and not yet set up.</summary>
    public int Pending => Limit - _places.CurrentCount;

    /// <summary>Gets how many times an accept has had to wait for a place since the start.</summary>
    public long Waits => Interlocked.Read(ref _waits);

    /// <summary>Gets what is called (on the accepting thread) each time an accept has to wait for a place, e.g. to log
    /// it rate-limited; null: nothing.</summary>
    public Action<ConnectionSetupLimit>? Waiting { get; init; }

    /// <summary>The default limit for <paramref name="processors"/> processors: <see cref="DerivedPerProcessor"/> each,
    /// at least <see cref="MinDerived"/>. Setting a connection up is a few system calls and one round trip to the
    /// parent: more of them at once than a few dozen per processor adds no throughput, only queueing inside the
    /// process.</summary>
    public static int DerivedLimit(int processors) => Math.Max(MinDerived, DerivedPerProcessor * Math.Max(1, processors));

    /// <summary>Takes a place, at once when one is free; false when the caller had to wait for it.</summary>
    /// <param name="cancellationToken">Stops waiting (the listener is stopping).</param>
    /// <returns>True when a place was free at once, false when the caller waited for one.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public async ValueTask<bool> TakeAsync(CancellationToken cancellationToken)
    {
        if (_places.Wait(0, CancellationToken.None))
        {
            return true;
        }

        Interlocked.Increment(ref _waits);
        Waiting?.Invoke(this);
        await _places.WaitAsync(cancellationToken).ConfigureAwait(false);
        return false;
    }

    /// <summary>A connection that holds a place taken with <see cref="TakeAsync"/>; give it back with
    /// <see cref="ConnectionSetup.Complete"/>.</summary>
    public ConnectionSetup Hold() => new(this);

    /// <summary>Gives back a place taken with <see cref="TakeAsync"/> (<see cref="ConnectionSetup.Complete"/> does, once).</summary>
    internal void Return() => _places.Release();

    /// <summary>The limit as logs name it: "(enclave.max_pending_connections = 64)" or "(… = 64, derived from 2 processors)".</summary>
    public string LimitText() => _derived
        ? string.Create(CultureInfo.InvariantCulture, $"({_setting} = {Limit}, derived from {Environment.ProcessorCount} processors)")
        : string.Create(CultureInfo.InvariantCulture, $"({_setting} = {Limit})");
}

/// <summary>
/// One accepted connection's place in a <see cref="ConnectionSetupLimit"/>, from accept until it is set up. The
/// handler completes it when the connection is set up (e.g. relaying starts); the listener completes it when the
/// handler ends, whatever happened; only the first completion gives the place back.
/// </summary>
internal sealed class ConnectionSetup
{
    /// <summary>A setup that holds no place (a listener without a limit; tests).</summary>
    public static readonly ConnectionSetup None = new(null);

    private ConnectionSetupLimit? _limit;

    internal ConnectionSetup(ConnectionSetupLimit? limit) => _limit = limit;

    /// <summary>Gets whether the place has been given back (or there was none).</summary>
    public bool IsComplete => Volatile.Read(ref _limit) is null;

    /// <summary>Gives the place back; later calls do nothing.</summary>
    public void Complete() => Interlocked.Exchange(ref _limit, null)?.Return();
}
