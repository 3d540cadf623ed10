using System.Net;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// <c>/etc/netns/NAME/resolv.conf</c>: `ip netns exec NAME` bind-mounts it over /etc/resolv.conf, so unmodified
/// clients run that way (dig, curl) use the given nameserver. Disposal deletes the directory.
/// </summary>
internal sealed class NamespaceResolvConf : IAsyncDisposable
{
    private NamespaceResolvConf(string directory) => Directory = directory;

    /// <summary>/etc/netns/NAME.</summary>
    public string Directory { get; }

    public static NamespaceResolvConf Write(string namespaceName, IPAddress nameserver)
    {
        var directory = Path.Combine("/etc/netns", namespaceName);
        ResourceLedger.TrackEtcDirectory(directory);
        System.IO.Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "resolv.conf"), $"nameserver {nameserver}\n");
        return new NamespaceResolvConf(directory);
    }

    public ValueTask DisposeAsync()
    {
        if (System.IO.Directory.Exists(Directory))
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }

        return ValueTask.CompletedTask;
    }
}
