using System.Net.Sockets;
using Microsoft.Extensions.Hosting;

namespace Egress.Hosting;

/// <summary>
/// Runs one listening component (the proxy, the DNS forwarder, the tunnel gateway) as a hosted service: binds at
/// start, where a bind failure becomes an <see cref="IOException"/> whose message names the address and the cause (the
/// host prints it as one line, as Kestrel does), and at stop lets the component drain and abort on its own deadline;
/// the host's shutdown token only ends the wait.
/// </summary>
internal sealed class ListenerHostedService(Action start, Func<Task> stop, Func<SocketException, string> describeBindFailure) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            start();
        }
        catch (SocketException ex)
        {
            throw new IOException(describeBindFailure(ex), ex);
        }

        // Any other IOException (e.g. a unix: socket path that cannot be created) already names its path and cause.

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
