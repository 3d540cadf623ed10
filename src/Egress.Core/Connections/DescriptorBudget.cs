using System.Globalization;

namespace Egress.Connections;

/// <summary>
/// The descriptors a process may spend on connections and relay pipes: its open-files limit (RLIMIT_NOFILE) less the
/// descriptors it already holds when the budget is made (the runtime's files, listeners; about 120 for a JIT host,
/// measured) and less a reserve kept for what the process opens later outside the budget (threads, DNS sockets, log
/// files) and for answering a refused connection. Connections take their sockets from it when admitted and splice pipes take their
/// two descriptors when created, so that neither can push the process into EMFILE where the runtime itself fails.
/// </summary>
internal sealed class DescriptorBudget
{
    /// <summary>The smallest reserve (descriptors), whatever the limit.</summary>
    public const int MinReserve = 64;

    /// <summary>The largest reserve (descriptors): enough for the runtime however many connections are open.</summary>
    public const int MaxReserve = 1024;

    /// <summary>What the descriptors open at the start count as where /proc/self/fd cannot be listed.</summary>
    private const int UncountedAtStart = 128;

    private static readonly Lazy<DescriptorBudget> s_process = new(() => ForLimit(Connections.OpenFileLimit.Current(), Connections.OpenFileLimit.OpenDescriptors() ?? UncountedAtStart));

    private long _inUse;

    /// <summary>Creates a budget of <paramref name="capacity"/> descriptors for a process limited to <paramref name="openFileLimit"/>.</summary>
    public DescriptorBudget(long openFileLimit, long capacity)
    {
        OpenFileLimit = openFileLimit;
        Capacity = capacity;
    }

    /// <summary>Gets the budget of this process, from its RLIMIT_NOFILE when first used.</summary>
    public static DescriptorBudget Process => s_process.Value;

    /// <summary>Gets the RLIMIT_NOFILE the budget was derived from.</summary>
    public long OpenFileLimit { get; }

    /// <summary>Gets the descriptors connections and pipes may hold together: the limit less those open at the start and the reserve.</summary>
    public long Capacity { get; }

    /// <summary>Gets the descriptors connections and pipes hold now.</summary>
    public long InUse => Interlocked.Read(ref _inUse);

    /// <summary>The reserve for a limit: an eighth of it, at least <see cref="MinReserve"/> and at most <see cref="MaxReserve"/>.</summary>
    public static long ReserveFor(long openFileLimit) => Math.Clamp(openFileLimit / 8, MinReserve, MaxReserve);

    /// <summary>The budget for a process limited to <paramref name="openFileLimit"/> descriptors that holds
    /// <paramref name="openAtStart"/> already.</summary>
    public static DescriptorBudget ForLimit(long openFileLimit, long openAtStart) =>
        new(openFileLimit, Math.Max(0, openFileLimit - openAtStart - ReserveFor(openFileLimit)));

    /// <summary>Takes <paramref name="count"/> descriptors if the budget has them; false (nothing taken) if not.</summary>
    public bool TryTake(int count)
    {
        long current = Interlocked.Read(ref _inUse);
        while (true)
        {
            if (current + count > Capacity)
            {
                return false;
            }

            long seen = Interlocked.CompareExchange(ref _inUse, current + count, current);
            if (seen == current)
            {
                return true;
            }

            current = seen;
        }
    }

    /// <summary>Gives back <paramref name="count"/> descriptors taken with <see cref="TryTake"/>.</summary>
    public void Release(int count) => Interlocked.Add(ref _inUse, -count);

    /// <summary>Why a connection was refused for want of descriptors, for logs and answers.</summary>
    public string ExhaustedReason() => string.Create(
        CultureInfo.InvariantCulture,
        $"descriptor {ConnectionAdmission.LimitReached} ({InUse} of {Capacity} usable descriptors in use, RLIMIT_NOFILE = {OpenFileLimit})");
}
