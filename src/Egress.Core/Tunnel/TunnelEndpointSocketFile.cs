using Egress.Configuration;

namespace Egress.Tunnel;

/// <summary>Tells whether a path is a Unix domain socket file, which .NET's file APIs cannot tell.</summary>
internal static class TunnelEndpointSocketFile
{
    /// <summary>Looks at <paramref name="path"/> without following a symbolic link.</summary>
    /// <param name="path">The path.</param>
    /// <param name="isSocket">Whether the path is a socket file (a symbolic link is not).</param>
    /// <returns>Whether anything exists at the path.</returns>
    /// <exception cref="IOException">statx(2) failed other than with ENOENT.</exception>
    public static bool Exists(string path, out bool isSocket)
    {
        int? type = PathFileType.Of(path, followLinks: false);
        isSocket = type == PathFileType.Socket;
        return type is not null;
    }
}
