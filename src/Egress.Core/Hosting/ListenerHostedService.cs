using Microsoft.Extensions.Hosting;

namespace Egress.Hosting;

/// <summary>
/// Runs one listening component (the proxy, the DNS forwarder, the tunnel gateway, the denial reporter) as a hosted
/// service: starts it at start, where a bind failure is the component's own <see cref="IOException"/> naming the
/// address and the cause (the host prints it as one line, as Kestrel does), and at stop lets the component drain and
/// abort on its own deadline; the host's shutdown token only ends the wait.
/// </summary>
internal sealed class ListenerHostedService(Action start, Func<Task> stop) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        start();
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
