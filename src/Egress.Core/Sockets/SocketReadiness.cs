using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Egress.Sockets;

/// <summary>
/// Waits for a socket to become readable, and receives without waiting, outside the runtime's socket engine: epoll
/// instances with a thread each (<see cref="EngineCount"/>; a descriptor always on the same one), each wait a pooled <see cref="ReadinessWaiter"/> registered with EPOLLONESHOT
/// (one epoll_ctl per wait: a socket's next wait re-arms the registration its last one left disabled; a cancelled wait
/// removes it, and the kernel removes a closed socket's). A socket waited on this way never gets the runtime's receive state (its
/// cached receive event args, operation and callback, about 0.5 KB a socket, kept for the socket's life); an idle relayed
/// connection waits on both its sockets, so that is what an idle connection no longer holds.
/// </summary>
/// <remarks>
/// A wait completes when the socket is readable (data, end of stream, a reset or error: the receive that follows says
/// which), when its token is cancelled (<see cref="OperationCanceledException"/>), and when the socket is closed while
/// it waits: a handle in use is shut down by <see cref="Socket.Dispose()"/> before it is closed, which makes it
/// readable, and the close proceeds once the wait has taken it out of the set. On other systems than Linux the waits are
/// the runtime's zero-byte receives.
/// </remarks>
internal static class SocketReadiness
{
    private const int MaxEvents = 256;
    private const int MaxEngines = 16;

    private static readonly Lock s_poolLock = new();
    private static ReadinessWaiter[] s_waiters = new ReadinessWaiter[64];
    private static ReadinessWaiter[] s_free = new ReadinessWaiter[64];
    private static int s_count;
    private static int s_freeCount;
    private static int[]? s_epolls;
    private static int[] s_added = new int[1024];
    private static readonly Lock s_chosenLock = new();
    private static ulong[] s_chosenEngine = new ulong[1024];

    [ThreadStatic]
    private static bool t_onEpollThread;

    [ThreadStatic]
    private static uint t_wakeEvents;

    /// <summary>How many epoll instances (each with its thread) serve the waits: one per processor, at most
    /// <see cref="MaxEngines"/>, as the runtime's socket engine runs when it completes inline. The relay's inline
    /// continuations run on these threads, so one thread would carry every connection's data.</summary>
    internal static int EngineCount { get; } = Math.Clamp(Environment.ProcessorCount, 1, MaxEngines);

    /// <summary>The epoll instance that serves descriptor <paramref name="fd"/> of the handle whose identity hash
    /// (<see cref="RuntimeHelpers.GetHashCode(object)"/>) is <paramref name="identity"/> (all of its waits, so that a
    /// re-arm finds its registration): the one <see cref="ShareEngine"/> chose for that handle, else the descriptor's
    /// number modulo <see cref="EngineCount"/>. The instances and their threads are created on the first wait.</summary>
    internal static int EpollFor(nint fd, int identity)
    {
        int[] epolls = Volatile.Read(ref s_epolls) ?? Start();
        return epolls[EngineFor(fd, identity, epolls.Length)];
    }

    private static int EngineFor(nint fd, int identity, int engines)
    {
        ulong[] chosen = Volatile.Read(ref s_chosenEngine);
        ulong record = (nuint)fd < (nuint)chosen.Length ? chosen[fd] : 0;
        if (record != 0 && (uint)(record >> 32) == (uint)identity)
        {
            return (int)(uint)record - 1; // chosen for this handle (a record left by a closed one has another identity)
        }

        return (int)((nuint)fd % (nuint)engines);
    }

    /// <summary>
    /// Serves <paramref name="socket"/>'s waits on the epoll instance, and so the thread, that serves
    /// <paramref name="partner"/>'s: for the two sockets of one relayed connection (the application's or the
    /// destination's, and its tunnel stream), so that its events wake one thread, which finds them together in one
    /// epoll_wait, as HAProxy keeps a connection on the thread that accepted it. Measured on the connection-rate
    /// benchmark: context switches per connection 1.60 to 1.18 on egress-enclave, 1.34 to 1.08 on egress-host
    /// (docs/benchmarks.md). The cost: both directions of one connection run on one thread, where two could split a
    /// bidirectional bulk transfer.
    /// </summary>
    /// <remarks>Only for a socket never waited on yet (call it before the first wait: a registration already in an epoll
    /// set stays where it is, and the choice is ignored); the choice is kept for this handle only (a descriptor number
    /// reused by another socket is served by the default again).</remarks>
    internal static void ShareEngine(Socket socket, Socket partner)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        SafeSocketHandle handle = socket.SafeHandle;
        nint fd = handle.DangerousGetHandle();
        nint partnerFd = partner.SafeHandle.DangerousGetHandle();
        int identity = RuntimeHelpers.GetHashCode(handle);
        if (fd < 0 || fd > int.MaxValue / 4 || partnerFd < 0 || WasAdded(fd, identity))
        {
            return;
        }

        int[] epolls = Volatile.Read(ref s_epolls) ?? Start();
        int engine = EngineFor(partnerFd, RuntimeHelpers.GetHashCode(partner.SafeHandle), epolls.Length);
        ulong record = ((ulong)(uint)identity << 32) | (uint)(engine + 1);
        lock (s_chosenLock)
        {
            // Written under the lock that grows the table, so no choice is written to a table already replaced; the
            // socket's own waits, which read it, come after this call.
            CoveringLocked(ref s_chosenEngine, fd)[fd] = record;
        }
    }

    /// <summary>Whether descriptor <paramref name="fd"/> was last added to its epoll set for the handle whose identity
    /// hash (<see cref="RuntimeHelpers.GetHashCode(object)"/>) is <paramref name="identity"/>: then a wait re-arms it
    /// (EPOLL_CTL_MOD), else adds it. A guess, never trusted: a wrong one costs the other call (ENOENT or EEXIST), and a
    /// record outlives the handle (the kernel drops a closed descriptor's registration; the number is reused), so the
    /// record is a hash, not the handle, which it would keep alive.</summary>
    internal static bool WasAdded(nint fd, int identity)
    {
        int[] added = Volatile.Read(ref s_added);
        return (nuint)fd < (nuint)added.Length && added[fd] == identity;
    }

    /// <summary>Records that <paramref name="fd"/> is in its epoll set for the handle with <paramref name="identity"/>
    /// (0 after a removal: a hash of 0 only costs a handle the failed re-arm).</summary>
    internal static void NoteAdded(nint fd, int identity)
    {
        int[] added = Volatile.Read(ref s_added);
        if ((nuint)fd >= (nuint)added.Length)
        {
            if (fd > int.MaxValue / 4)
            {
                return;
            }

            lock (s_poolLock)
            {
                added = CoveringLocked(ref s_added, fd);
            }
        }

        added[fd] = identity;
    }

    /// <summary>A per-descriptor table that has a slot for <paramref name="fd"/>: <paramref name="table"/>, or a copy at
    /// least twice its size put in its place. Under the lock that guards the table's growth.</summary>
    private static T[] CoveringLocked<T>(ref T[] table, nint fd)
    {
        T[] current = table;
        if ((nuint)fd < (nuint)current.Length)
        {
            return current;
        }

        T[] grown = new T[Math.Max(current.Length * 2, (int)fd + 1)];
        current.CopyTo(grown, 0);
        Volatile.Write(ref table, grown);
        return grown;
    }

    /// <summary>How many waiters exist (in use or pooled): at most the waits that were ever pending at once.</summary>
    internal static int WaiterCount => Volatile.Read(ref s_count);

    /// <summary>Completes when <paramref name="socket"/> is readable: at once if it is now (poll(2)), else through epoll.</summary>
    /// <param name="socket">The socket to wait on.</param>
    /// <param name="cancellationToken">Ends the wait.</param>
    /// <param name="drained">Nothing is expected to be queued (e.g. the peer answers only what was just sent): the
    /// poll(2) is skipped, as in <see cref="WaitReadableInlineAsync(Socket, bool)"/>.</param>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static ValueTask WaitReadableAsync(Socket socket, CancellationToken cancellationToken = default, bool drained = false)
    {
        if (!OperatingSystem.IsLinux())
        {
            return new ValueTask(socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken).AsTask());
        }

        cancellationToken.ThrowIfCancellationRequested();
        if (!drained && socket.Poll(0, SelectMode.SelectRead))
        {
            return ValueTask.CompletedTask;
        }

        return Rent().Arm(socket, EpollNative.In | EpollNative.ReadHangUp, cancellationToken);
    }

    /// <summary>
    /// As <see cref="WaitReadableAsync"/> without a token, but the waiter's continuation runs on its epoll thread, saving
    /// the hop to the thread pool per wake-up (measured: a relayed round trip's p50 about 100 µs lower through two
    /// hosts on a busy 2-core machine). Only for code that, until its next wait, neither blocks nor closes a socket
    /// another wait holds (the relay's direction loops; the set-up of a connection up to its relay): a close waits for
    /// that wait to leave the epoll set, which an epoll thread blocked in that close might never let happen
    /// (<see cref="OnEpollThread"/> tells such code to hand that work to the thread pool).
    /// </summary>
    /// <param name="socket">The socket to wait on.</param>
    /// <param name="drained">The caller's last receive on <paramref name="socket"/> came back short of what it asked for,
    /// or empty (EAGAIN): nothing was queued then, so the poll(2) that would find data already there is skipped, one
    /// system call per wait. Data that arrived since still completes the wait at once: arming it (epoll_ctl) checks the
    /// socket's readiness.</param>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    internal static ValueTask WaitReadableInlineAsync(Socket socket, bool drained = false)
    {
        if (!OperatingSystem.IsLinux())
        {
            return WaitReadableAsync(socket);
        }

        if (!drained && socket.Poll(0, SelectMode.SelectRead))
        {
            return ValueTask.CompletedTask;
        }

        return Rent().Arm(socket, EpollNative.In | EpollNative.ReadHangUp, CancellationToken.None, inline: true);
    }

    /// <summary>
    /// As <see cref="WaitReadableInlineAsync(Socket, bool)"/> with a token: woken by the socket, the continuation runs on
    /// the epoll thread; cancelled, on the cancelling thread (a timer's, or the one that stops). For callers that, on
    /// either, hand what may block or close a socket to the thread pool first (<see cref="OnEpollThread"/>).
    /// </summary>
    /// <param name="socket">The socket to wait on.</param>
    /// <param name="cancellationToken">Ends the wait.</param>
    /// <param name="drained">As for <see cref="WaitReadableInlineAsync(Socket, bool)"/>.</param>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    internal static ValueTask WaitReadableInlineAsync(Socket socket, CancellationToken cancellationToken, bool drained = false)
    {
        if (!OperatingSystem.IsLinux())
        {
            return WaitReadableAsync(socket, cancellationToken);
        }

        cancellationToken.ThrowIfCancellationRequested();
        if (!drained && socket.Poll(0, SelectMode.SelectRead))
        {
            return ValueTask.CompletedTask;
        }

        return Rent().Arm(socket, EpollNative.In | EpollNative.ReadHangUp, cancellationToken, inline: true);
    }

    /// <summary>Whether the caller runs on an epoll thread (an inline wait's continuation), or on a thread that follows
    /// their rules for now (<see cref="EnterEpollThreadRules"/>).</summary>
    internal static bool OnEpollThread => t_onEpollThread;

    /// <summary>
    /// Makes the calling thread follow the epoll threads' rules until <see cref="ExitEpollThreadRules"/>:
    /// <see cref="OnEpollThread"/> is true and <see cref="LeaveEpollThread"/> moves to the thread pool. For a thread that
    /// runs code written for the epoll threads while it must not block either: a listener's accepting thread (the
    /// runtime's socket thread) while a connection's handler runs there up to its first wait
    /// (<see cref="Connections.ConnectionListener.HandlersOnAcceptThread"/>).
    /// </summary>
    /// <returns>Whether the thread followed them already: pass it to <see cref="ExitEpollThreadRules"/>.</returns>
    internal static bool EnterEpollThreadRules()
    {
        bool previous = t_onEpollThread;
        t_onEpollThread = true;
        return previous;
    }

    /// <summary>Ends <see cref="EnterEpollThreadRules"/>: the thread follows the rules again only if it did before.</summary>
    /// <param name="previous">What <see cref="EnterEpollThreadRules"/> returned.</param>
    internal static void ExitEpollThreadRules(bool previous) => t_onEpollThread = previous;

    /// <summary>
    /// The epoll events (<see cref="EpollNative.In"/>, <see cref="EpollNative.ReadHangUp"/>, ...) of the wake-up that
    /// ended the caller's last wait, once (a second call returns 0), on whichever thread resumed it; 0 for a wait that
    /// completed without epoll (its poll(2) found data) or was cancelled. Meaningful as the first thing after the
    /// await: call it once before the wait too, to drop what an earlier wait on this thread left.
    /// </summary>
    internal static uint TakeWakeEvents()
    {
        uint events = t_wakeEvents;
        t_wakeEvents = 0;
        return events;
    }

    /// <summary>Records the events of the wait whose result the calling thread takes (<see cref="ReadinessWaiter.GetResult"/>).</summary>
    internal static void NoteWakeEvents(uint events) => t_wakeEvents = events;

    /// <summary>
    /// Awaited (<c>await SocketReadiness.LeaveEpollThread();</c>), moves the caller to the thread pool when it runs on an
    /// epoll thread (<see cref="OnEpollThread"/>), and continues at once on any other thread: the step before work an
    /// epoll thread must not do (block, close a socket another wait holds, write a log line: the library's caller chooses
    /// the logger, and one may block, as Microsoft's console logger does with a full queue; the hosts' never does).
    /// </summary>
    internal static LeaveEpollThreadAwaitable LeaveEpollThread() => default;

    /// <summary>As <see cref="LeaveEpollThread"/>, unless <paramref name="stay"/>: then it continues at once, on whichever
    /// thread (<see cref="Relay.RelayOptions.EndOnEpollThread"/>).</summary>
    internal static LeaveEpollThreadAwaitable LeaveEpollThreadUnless(bool stay) => new(stay);

    /// <summary>What <see cref="LeaveEpollThread"/> and <see cref="LeaveEpollThreadUnless"/> return: their own awaiter,
    /// complete off the epoll threads, and at once for a caller that stays.</summary>
    internal readonly struct LeaveEpollThreadAwaitable(bool stay) : ICriticalNotifyCompletion
    {
        /// <summary>Off an epoll thread there is nothing to leave; nor when the caller stays.</summary>
        public bool IsCompleted => stay || !t_onEpollThread;

        public LeaveEpollThreadAwaitable GetAwaiter() => this;

        public void GetResult()
        {
        }

        public void OnCompleted(Action continuation) =>
            ThreadPool.QueueUserWorkItem(static continuation => continuation(), continuation, preferLocal: false);

        public void UnsafeOnCompleted(Action continuation) =>
            ThreadPool.UnsafeQueueUserWorkItem(static continuation => continuation(), continuation, preferLocal: false);
    }

    private static ValueTask WaitAsync(Socket socket, uint events, CancellationToken cancellationToken, bool inline = false) =>
        OperatingSystem.IsLinux()
            ? Rent().Arm(socket, events, cancellationToken, inline)
            : new ValueTask(socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken).AsTask());

    /// <summary>Receives what <paramref name="socket"/> has now, without waiting, in either blocking mode: on Linux a
    /// recv(2) with MSG_DONTWAIT of our own (<see cref="SocketNative.ReceiveNow"/>), which neither changes the socket's
    /// mode nor gives it the runtime's asynchronous context; elsewhere a blocking socket is non-blocking for this one
    /// call (the mode its owner sees is unchanged).</summary>
    /// <returns>Bytes received; 0 at end of stream; -1 when nothing is there yet (EAGAIN).</returns>
    /// <exception cref="SocketException">The receive failed (e.g. ECONNRESET), as an asynchronous receive would have.</exception>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    public static int ReceiveNow(Socket socket, Span<byte> buffer)
    {
        if (OperatingSystem.IsLinux())
        {
            return SocketNative.ReceiveNow(socket.SafeHandle, buffer);
        }

        bool blocking = socket.Blocking;
        if (blocking)
        {
            socket.Blocking = false;
        }

        try
        {
            int received = socket.Receive(buffer, SocketFlags.None, out SocketError error);
            return error switch
            {
                SocketError.Success => received,
                SocketError.WouldBlock => -1,
                _ => throw new SocketException((int)error),
            };
        }
        finally
        {
            if (blocking)
            {
                socket.Blocking = true;
            }
        }
    }

    /// <summary>As <see cref="Socket.ReceiveAsync(Memory{byte}, SocketFlags, CancellationToken)"/>: what is there now,
    /// else waits (<see cref="WaitReadableAsync"/>) and receives then.</summary>
    /// <returns>Bytes received (at least 1 for a non-empty <paramref name="buffer"/>); 0 at end of stream.</returns>
    /// <exception cref="SocketException">The receive failed.</exception>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <remarks>Its state machine comes from a pool, so a receive that waits allocates nothing.</remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public static async ValueTask<int> ReceiveAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        while (true)
        {
            int received = ReceiveNow(socket, buffer.Span);
            if (received >= 0)
            {
                return received;
            }

            await WaitAsync(socket, EpollNative.In | EpollNative.ReadHangUp, cancellationToken).ConfigureAwait(false); // no poll: nothing was there
        }
    }

    /// <summary>
    /// As <see cref="Socket.ConnectAsync(EndPoint, CancellationToken)"/> on Linux, without the receive event args the
    /// runtime's connect leaves on the socket for its life (about 0.3 KB): a non-blocking connect(2), then a wait for the
    /// socket to become writable and its SO_ERROR. The socket's blocking mode is restored afterwards.
    /// </summary>
    /// <exception cref="SocketException">The connect failed (e.g. <see cref="SocketError.ConnectionRefused"/>), as the
    /// runtime's would have; <see cref="SocketError.WouldBlock"/> for a Unix socket whose listener's backlog is full.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (the socket is left
    /// connecting: the caller disposes it).</exception>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    /// <param name="socket">The socket to connect.</param>
    /// <param name="endPoint">Where to.</param>
    /// <param name="cancellationToken">Ends the connect.</param>
    /// <param name="inline">The wait for the connect to finish continues on the epoll thread (a cancelled one on the
    /// cancelling thread), and so does the caller's code until it next waits: as for
    /// <see cref="WaitReadableInlineAsync(Socket, bool)"/>, only for callers that neither block nor close a socket another wait holds
    /// before then (the gateway's dial, status and relay start).</param>
    public static async ValueTask ConnectAsync(Socket socket, EndPoint endPoint, CancellationToken cancellationToken, bool inline = false)
    {
        if (!OperatingSystem.IsLinux())
        {
            await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
            return;
        }

        cancellationToken.ThrowIfCancellationRequested();
        bool blocking = socket.Blocking;
        socket.Blocking = false;
        try
        {
            try
            {
                socket.Connect(endPoint);
                return;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.WouldBlock)
            {
                // EINPROGRESS (or, for a Unix socket, EAGAIN: checked below).
            }
            catch (SocketException ex)
            {
                // The synchronous connect names the endpoint in its message; the asynchronous one, whose message the
                // gateway answers with, does not.
                throw new SocketException((int)ex.SocketErrorCode);
            }

            await FinishConnectAsync(socket, cancellationToken, inline).ConfigureAwait(false);
            _ = socket.Connected; // the runtime records the finished non-blocking connect (remote endpoint, state)
        }
        finally
        {
            if (blocking && !socket.SafeHandle.IsClosed)
            {
                socket.Blocking = true;
            }
        }
    }

    /// <summary>
    /// As <see cref="ConnectAsync"/> for a socket that only a relay reads and writes, without ever giving it the
    /// runtime's asynchronous context (its SocketAsyncContext and locks, about 0.2 KB kept for the socket's life, which
    /// <see cref="Socket.Blocking"/> = false and the runtime's own connect create): on Linux our own non-blocking
    /// connect(2) (<see cref="SocketNative"/>) on <paramref name="socket"/>'s descriptor, waited for through epoll.
    /// </summary>
    /// <remarks>
    /// The runtime does not see this connect: to it the socket is still unconnected (<see cref="Socket.Connected"/>
    /// false, <see cref="Socket.RemoteEndPoint"/> null, so never for <see cref="NetworkStream"/>) and blocking
    /// (<see cref="Socket.Blocking"/> true), while the descriptor is left non-blocking (O_NONBLOCK, as the relay wants it),
    /// whether the connect succeeds or not: the runtime's own synchronous Send/Receive on it would fail instead of
    /// waiting. Its asynchronous operations, socket options, <see cref="Socket.Shutdown"/> and close work as on any
    /// socket, except that a shutdown after the connection has ended throws <see cref="SocketError.NotConnected"/>
    /// (the runtime ignores ENOTCONN only for a socket it knows connected). A Socket made from the descriptor instead
    /// (a dup and the runtime's constructor) would cost about 10 system calls per connection and still not be seen
    /// connected on AF_VSOCK, for which the runtime has no end point type.
    /// </remarks>
    /// <exception cref="SocketException">As for <see cref="ConnectAsync"/>; the caller disposes the socket, as it does
    /// a cancelled one.</exception>
    /// <inheritdoc cref="ConnectAsync" path="/exception"/>
    /// <inheritdoc cref="ConnectAsync" path="/param"/>
    public static ValueTask ConnectWithoutContextAsync(Socket socket, EndPoint endPoint, CancellationToken cancellationToken, bool inline = false)
    {
        if (!OperatingSystem.IsLinux())
        {
            return ConnectAsync(socket, endPoint, cancellationToken, inline);
        }

        cancellationToken.ThrowIfCancellationRequested();
        if (endPoint is IPEndPoint { AddressFamily: AddressFamily.InterNetwork } v4 && socket.AddressFamily == AddressFamily.InterNetworkV6)
        {
            endPoint = new IPEndPoint(v4.Address.MapToIPv6(), v4.Port); // as the runtime's connect on a dual-mode socket
        }

        // Non-blocking by our own call: the runtime's Socket.Blocking = false would create the asynchronous context.
        SocketNative.SetNonBlocking(socket.SafeHandle, true);
        int errno = SocketNative.Connect(socket.SafeHandle, endPoint);
        if (errno == 0)
        {
            return ValueTask.CompletedTask;
        }

        if (errno != SocketNative.InProgress && errno != SocketNative.Again && errno != SocketNative.Interrupted)
        {
            // As the runtime's: EINPROGRESS and EAGAIN wait; any other error is thrown without naming the endpoint.
            return ValueTask.FromException(SocketNative.ExceptionFor(errno));
        }

        return FinishConnectAsync(socket, cancellationToken, inline);
    }

    /// <summary>Waits for a non-blocking connect under way (EINPROGRESS; for a Unix socket EAGAIN; EINTR: it goes on in
    /// the background) and throws its error: both <see cref="ConnectAsync"/>'s and <see cref="ConnectWithoutContextAsync"/>'s.</summary>
    private static async ValueTask FinishConnectAsync(Socket socket, CancellationToken cancellationToken, bool inline)
    {
        _ = TakeWakeEvents(); // nothing left from an earlier wait on this thread
        await WaitAsync(socket, EpollNative.Out, cancellationToken, inline).ConfigureAwait(false);
        uint events = TakeWakeEvents();
        if (events != 0 && (events & (EpollNative.Error | EpollNative.HangUp)) == 0
            && socket.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6)
        {
            // A TCP socket is writable only once its handshake is done (tcp_poll gives no EPOLLOUT in SYN-SENT), and a
            // connect that failed reports EPOLLERR with EPOLLHUP: without them, SO_ERROR would read 0, so it is not
            // asked for (one system call per connection). An error that lands after the wake-up fails the relay's first
            // receive or send instead, as it would a moment later.
            return;
        }

        var error = (SocketError)(int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error)!;
        if (error != SocketError.Success)
        {
            throw new SocketException((int)error);
        }

        // Only a Unix socket's connect can end EAGAIN without having started; a TCP connect that failed has its
        // error in SO_ERROR, so asking for the peer's name is one system call per connection for nothing.
        if (socket.AddressFamily == AddressFamily.Unix && !EpollNative.HasPeer(socket.SafeHandle))
        {
            throw new SocketException((int)SocketError.WouldBlock); // EAGAIN: never started (a full Unix backlog)
        }
    }

    private static ReadinessWaiter Rent()
    {
        lock (s_poolLock)
        {
            if (s_freeCount > 0)
            {
                ReadinessWaiter pooled = s_free[--s_freeCount];
                s_free[s_freeCount] = null!;
                return pooled;
            }

            var waiter = new ReadinessWaiter(s_count);
            if (s_count == s_waiters.Length)
            {
                ReadinessWaiter[] grown = new ReadinessWaiter[s_waiters.Length * 2];
                s_waiters.CopyTo(grown, 0);
                Volatile.Write(ref s_waiters, grown);
            }

            s_waiters[s_count] = waiter;
            Volatile.Write(ref s_count, s_count + 1);
            return waiter;
        }
    }

    /// <summary>Puts a waiter whose wait is over (its result taken) back in the pool.</summary>
    internal static void Return(ReadinessWaiter waiter)
    {
        lock (s_poolLock)
        {
            if (s_freeCount == s_free.Length)
            {
                Array.Resize(ref s_free, s_free.Length * 2);
            }

            s_free[s_freeCount++] = waiter;
        }
    }

    private static int[] Start()
    {
        lock (s_poolLock)
        {
            if (s_epolls is null)
            {
                int[] epolls = new int[EngineCount];
                for (int i = 0; i < epolls.Length; i++)
                {
                    epolls[i] = EpollNative.Create();
                    var thread = new Thread(static state => Run((int)state!)) { IsBackground = true, Name = $"egress-readiness-{i}" };
                    thread.UnsafeStart(epolls[i]);
                }

                Volatile.Write(ref s_epolls, epolls);
            }

            return s_epolls;
        }
    }

    /// <summary>An epoll thread: hands each event to its waiter (which runs an inline wait's continuation here and queues
    /// any other to the thread pool).</summary>
    private static unsafe void Run(int epoll)
    {
        t_onEpollThread = true;
        byte* events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * EpollNative.EventSize));
        while (true)
        {
            int count = EpollNative.Wait(epoll, events, MaxEvents, -1);
            if (count < 0)
            {
                if (Marshal.GetLastPInvokeError() == EpollNative.Interrupted)
                {
                    continue;
                }

                Environment.FailFast($"epoll_wait failed: errno {Marshal.GetLastPInvokeError()}");
            }

            ReadinessWaiter[] waiters = Volatile.Read(ref s_waiters);
            for (int i = 0; i < count; i++)
            {
                ulong data = EpollNative.DataAt(events, i);
                int slot = (int)(uint)data;
                ReadinessWaiter waiter = slot < waiters.Length && waiters[slot] is { } known ? known : Volatile.Read(ref s_waiters)[slot];
                waiter.OnReadable((uint)(data >> 32), EpollNative.EventsAt(events, i));
            }
        }
    }
}
