using System.Reflection;
using System.Runtime.InteropServices;

namespace Egress.Hosting;

/// <summary>
/// What a host says it is, for <c>--version</c>, the head of <c>--help</c> and the first log line: the program, its
/// informational version (<c>VersionPrefix</c> from Directory.Build.props; the .NET SDK appends <c>+</c> and the git
/// commit when the build runs in a git checkout), the .NET runtime and its RID, e.g.
/// <c>egress-host 0.1.0+406d79f4e6a0713461aaba25556b22f17258ca7d (.NET 10.0.0, linux-x64)</c>.
/// </summary>
internal static class HostVersion
{
    /// <summary>Gets the line for this program (the assembly this file is compiled into).</summary>
    public static string Text { get; } = Describe(typeof(HostVersion).Assembly);

    /// <summary>Describes <paramref name="assembly"/> and the runtime it runs on.</summary>
    public static string Describe(Assembly assembly)
    {
        string name = assembly.GetName().Name ?? "egress";
        string version = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? assembly.GetName().Version?.ToString()
            ?? "unknown";
        return $"{name} {version} ({RuntimeInformation.FrameworkDescription}, {RuntimeInformation.RuntimeIdentifier})";
    }
}
