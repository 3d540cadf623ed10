namespace Egress.Hosting;

/// <summary>
/// The start-once rule of the package's services (<c>TunnelGateway</c>, <c>EgressProxy</c>, <c>DnsForwarder</c>): a
/// service binds its addresses once, when it is started; a second start, or a start after it was disposed, throws
/// before anything is bound, so no listener outlives a dispose that follows its start. A start whose bind failed
/// (nothing stays bound then) may be tried again. Starts racing each other are safe; a start racing the dispose is
/// not supported.
/// </summary>
/// <param name="service">The service's name, for the exceptions (e.g. <c>TunnelGateway</c>).</param>
internal sealed class StartOnce(string service)
{
    private const int NotStarted = 0;
    private const int Started = 1;
    private const int Disposed = 2;

    private int _state;

    /// <summary>Marks the service started.</summary>
    /// <exception cref="ObjectDisposedException">The service was disposed.</exception>
    /// <exception cref="InvalidOperationException">The service was started before.</exception>
    public void Enter()
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

    /// <summary>Marks the service disposed: a later start throws <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose() => Volatile.Write(ref _state, Disposed);
}
