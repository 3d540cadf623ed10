using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>Unmodified command-line clients (curl, nc, dig, sh pipelines) run inside a namespace with a bounded time.</summary>
internal static class Clients
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    /// <summary>curl exit codes meaning "refused or reset": 7 couldn't connect, 56 failure receiving.</summary>
    public static readonly int[] RefusedOrReset = [7, 56];

    public static Task<CommandResult> CurlAsync(string namespaceName, string url, params string[] options) =>
        Command.RunInNamespaceAsync(namespaceName, Timeout, ["curl", "-sS", "--max-time", "10", .. options, url]);

    /// <summary>curl exit code 6: could not resolve host.</summary>
    public const int CouldNotResolve = 6;

    /// <summary>dig with the namespace's resolv.conf (or an explicit @server in <paramref name="arguments"/>), one try of 5 s.</summary>
    public static async Task<DigResult> DigAsync(string namespaceName, params string[] arguments) =>
        DigResult.Parse(await Command.RunInNamespaceAsync(namespaceName, Timeout, ["dig", "+tries=1", "+time=5", .. arguments]).ConfigureAwait(false));

    public static Task<CommandResult> NcAsync(string namespaceName, byte[] standardInput, params string[] arguments) =>
        Command.RunInNamespaceAsync(namespaceName, Timeout, standardInput, ["nc", .. arguments]);

    public static Task<CommandResult> ShellAsync(string namespaceName, string script) =>
        Command.RunInNamespaceAsync(namespaceName, Timeout, "sh", "-c", script);
}
