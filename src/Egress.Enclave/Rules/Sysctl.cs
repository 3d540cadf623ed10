namespace Egress.Enclave.Rules;

/// <summary>
/// Reads and writes kernel parameters by their sysctl name (<c>net.ipv4.tcp_timestamps</c>); the seam that lets tests
/// stand in for <c>/proc/sys</c>.
/// </summary>
internal interface ISysctl
{
    /// <summary>The parameter's value without surrounding whitespace, or null when this kernel does not have it.</summary>
    /// <exception cref="IOException">It exists but cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">It exists but this process may not read it.</exception>
    string? Read(string name);

    /// <summary>Sets the parameter (in this network namespace for <c>net.*</c> parameters that are per namespace).</summary>
    /// <exception cref="IOException">The kernel refused the value, or the parameter does not exist.</exception>
    /// <exception cref="UnauthorizedAccessException">This process may not write it (not root, or /proc/sys read-only).</exception>
    void Write(string name, string value);
}

/// <summary>Kernel parameters through <c>/proc/sys</c> (Documentation/admin-guide/sysctl); needs no sysctl program.</summary>
internal sealed class ProcSysctl : ISysctl
{
    public static readonly ProcSysctl Instance = new();

    private ProcSysctl()
    {
    }

    public string? Read(string name)
    {
        var path = PathOf(name);
        return File.Exists(path) ? File.ReadAllText(path).Trim() : null;
    }

    public void Write(string name, string value) => File.WriteAllText(PathOf(name), value + "\n");

    private static string PathOf(string name) => "/proc/sys/" + name.Replace('.', '/');
}
