using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;

namespace Egress.Sockets;

/// <summary>
/// One wait for a socket to become readable (or writable) on <see cref="SocketReadiness"/>'s epoll instance: pooled, and the source
/// of the <see cref="ValueTask"/> its waiter awaits. While armed it holds a reference on the socket's handle, so the
/// descriptor stays open (and cannot be reused) until its event fired or it is out of the epoll set again; a close in the meantime
/// (<see cref="Socket.Dispose()"/>) shuts the socket down first (the runtime does so for a handle in use), which wakes
/// the wait.
/// </summary>
/// <remarks>Completions run their continuations on the thread pool, except an inline wait's, which runs on the epoll
/// thread that saw the event, or on the cancelling thread when its token ends it. It locks itself (no lock object per
/// waiter); nothing else locks it.</remarks>
internal sealed class ReadinessWaiter : IValueTaskSource
{
    private const int Idle = 0;
    private const int Armed = 1;

    private static readonly Action<object?> s_onCancelled = static state => ((ReadinessWaiter)state!).Cancel();

    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private SafeSocketHandle? _handle;
    private CancellationTokenRegistration _cancellation;
    private CancellationToken _token;
    private int _state;
    private uint _generation;
    private uint _events; // of the wake-up that ended the last wait (0: cancelled)

    public ReadinessWaiter(int slot) => Slot = slot;

    /// <summary>This waiter's index in <see cref="SocketReadiness"/>'s table (the low half of the epoll data).</summary>
    public int Slot { get; }

    /// <summary>Registers <paramref name="socket"/> for one event of <paramref name="events"/> (EPOLLIN with EPOLLRDHUP,
    /// or EPOLLOUT; errors and hang-ups always wake) and returns the wait; an <c>inline</c> wait's continuation runs on
    /// the epoll thread (<see cref="SocketReadiness.WaitReadableInlineAsync(Socket, bool)"/>).</summary>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    public ValueTask Arm(Socket socket, uint events, CancellationToken cancellationToken, bool inline = false)
    {
        SafeSocketHandle handle = socket.SafeHandle;
        uint generation;
        short version;
        lock (this)
        {
            _core.Reset();
            _core.RunContinuationsAsynchronously = !inline;
            version = _core.Version;
            generation = ++_generation;
            _events = 0;
            bool referenced = false;
            try
            {
                handle.DangerousAddRef(ref referenced); // throws ObjectDisposedException once closed
            }
            catch (ObjectDisposedException)
            {
                SocketReadiness.Return(this);
                throw;
            }

            _handle = handle;
            _token = cancellationToken;
            _state = Armed;
            // Re-armed when an earlier wait left the descriptor in the set, disabled; added otherwise. Which of the two
            // is a guess from SocketReadiness's record of this handle (one system call when right, two when not).
            nint fd = handle.DangerousGetHandle();
            ulong data = ((ulong)generation << 32) | (uint)Slot;
            int identity = RuntimeHelpers.GetHashCode(handle);
            int epoll = SocketReadiness.EpollFor(fd, identity);
            bool added = SocketReadiness.WasAdded(fd, identity);
            int errno = EpollNative.Control(epoll, added ? EpollNative.Modify : EpollNative.Add, fd, events | EpollNative.OneShot, data);
            if (errno == (added ? EpollNative.NotFound : EpollNative.Exists))
            {
                errno = EpollNative.Control(epoll, added ? EpollNative.Add : EpollNative.Modify, fd, events | EpollNative.OneShot, data);
            }

            if (errno == 0 && !added)
            {
                SocketReadiness.NoteAdded(fd, identity);
            }
            if (errno != 0)
            {
                _state = Idle;
                _handle = null;
                handle.DangerousRelease();
                _core.SetException(Relay.SpliceNative.ToSocketException(errno, "epoll_ctl"));
                return new ValueTask(this, version);
            }
        }

        if (cancellationToken.CanBeCanceled)
        {
            // Registered after the descriptor is in the set; a token already cancelled completes the wait here.
            CancellationTokenRegistration registration = cancellationToken.UnsafeRegister(s_onCancelled, this);
            lock (this)
            {
                if (_state == Armed && _generation == generation)
                {
                    _cancellation = registration;
                    registration = default;
                }
            }

            registration.Dispose(); // the wait is already over
        }

        return new ValueTask(this, version);
    }

    /// <summary>The epoll thread saw the event with <paramref name="generation"/> (ignored if that wait is over).</summary>
    /// <param name="generation">The wait the event was armed for.</param>
    /// <param name="events">What epoll reported (EPOLLIN, EPOLLRDHUP, ...): the waiting code reads it with
    /// <see cref="SocketReadiness.TakeWakeEvents"/>.</param>
    public void OnReadable(uint generation, uint events)
    {
        CancellationTokenRegistration registration;
        lock (this)
        {
            if (_state != Armed || _generation != generation)
            {
                return;
            }

            _events = events;
            registration = Disarm(remove: false); // EPOLLONESHOT disabled it; the next wait re-arms it
        }

        registration.Dispose(); // waits for a cancellation callback that is running (it finds the wait over)
        _core.SetResult(true);
    }

    private void Cancel()
    {
        CancellationToken token;
        lock (this)
        {
            if (_state != Armed)
            {
                return;
            }

            token = _token;
            _ = Disarm(remove: true); // this callback is the registration: nothing to dispose
        }

        _core.SetException(new OperationCanceledException(token));
    }

    /// <summary>Ends the wait: takes the descriptor out of the set (<paramref name="remove"/>: a cancelled wait, whose
    /// registration is still armed), then releases the handle (a pending close proceeds). A descriptor whose one event
    /// fired stays in the set, disabled (EPOLLONESHOT), until the next wait re-arms it or its close removes it: the kernel
    /// drops a closed file's registrations, and an event left from an earlier wait carries an older generation.</summary>
    private CancellationTokenRegistration Disarm(bool remove)
    {
        SafeSocketHandle handle = _handle!;
        if (remove)
        {
            nint fd = handle.DangerousGetHandle();
            _ = EpollNative.Control(SocketReadiness.EpollFor(fd, RuntimeHelpers.GetHashCode(handle)), EpollNative.Delete, fd, 0, 0);
            SocketReadiness.NoteAdded(fd, identity: 0); // the next wait adds it again
        }

        _handle = null;
        _token = default;
        _state = Idle;
        CancellationTokenRegistration registration = _cancellation;
        _cancellation = default;
        handle.DangerousRelease();
        return registration;
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    public void GetResult(short token)
    {
        try
        {
            SocketReadiness.NoteWakeEvents(_events); // on the thread that resumes the waiting code, whichever it is
            _core.GetResult(token);
        }
        finally
        {
            SocketReadiness.Return(this);
        }
    }
}
