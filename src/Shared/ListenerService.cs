using Microsoft.Extensions.Hosting;

namespace Egress.Hosting;

/// <summary>
/// Runs one listening component (the proxy, the DNS forwarder, the tunnel gateway) as a hosted service: binds at
/// start (a bind failure becomes a <see cref="ListenerStartException"/> with <paramref name="describeFailure"/>'s
/// message), and at stop lets it drain and abort on its own deadline; the host's shutdown token only ends the wait.
/// </summary>
internal sealed class ListenerService(Action start, Func<Task> stop, Func<Exception, string?> describeFailure) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            start();
        }
        catch (Exception ex) when (describeFailure(ex) is { } message)
        {
            throw new ListenerStartException(message, ex);
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await stop().WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The host's shutdown timeout passed; the component has already aborted its connections and logged it.
        }
    }
}
