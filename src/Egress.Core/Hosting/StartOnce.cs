namespace Egress.Hosting;

/// <summary>
/// The start-once rule of the package's services (<c>TunnelGateway</c>, <c>EgressProxy</c>, <c>DnsForwarder</c>): a
/// service binds its addresses once, when it is started; a second start, or a start after it was disposed, throws
/// before anything is bound. A start and a dispose exclude each other: a dispose that comes first makes the start throw,
/// and one that comes while the start binds waits for it and then tears down what it bound, so no listener outlives the
/// object that owns it. A start whose bind failed (nothing stays bound then) may be tried again. Thread-safe.
/// </summary>
/// <param name="service">The service's name, for the exceptions (e.g. <c>TunnelGateway</c>).</param>
internal sealed class StartOnce(string service)
{
    private const int NotStarted = 0;
    private const int Started = 1;
    private const int Disposed = 2;

    private readonly Lock _gate = new();
    private int _state;

    /// <summary>Runs <paramref name="start"/> (which binds and starts listening) once, excluding a dispose meanwhile.</summary>
    /// <param name="start">The start; it calls <see cref="Failed"/> when its bind failed and nothing stays bound.</param>
    /// <exception cref="ObjectDisposedException">The service was disposed.</exception>
    /// <exception cref="InvalidOperationException">The service was started before.</exception>
    public void Run(Action start)
    {
        lock (_gate)
        {
            Enter();
            start();
        }
    }

    /// <summary>Marks the service started.</summary>
    /// <exception cref="ObjectDisposedException">The service was disposed.</exception>
    /// <exception cref="InvalidOperationException">The service was started before.</exception>
    private void Enter()
    {
        switch (Interlocked.CompareExchange(ref _state, Started, NotStarted))
        {
            case Started:
                throw new InvalidOperationException($"this {service} was started already; a service starts once (create another to listen again)");
            case Disposed:
                throw new ObjectDisposedException(service, $"this {service} was disposed; create another to listen again");
        }
    }

    /// <summary>The start that <see cref="Enter"/> admitted failed before binding anything: another may be tried.</summary>
    public void Failed() => Interlocked.CompareExchange(ref _state, NotStarted, Started);

    /// <summary>Marks the service disposed: a later start throws <see cref="ObjectDisposedException"/>; a start under way
    /// finishes first (its listeners are then the dispose's to tear down).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            Volatile.Write(ref _state, Disposed);
        }
    }
}
