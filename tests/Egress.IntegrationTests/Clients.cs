using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>Unmodified command-line clients (curl, nc, dig, sh pipelines) run inside a namespace with a bounded time.</summary>
internal static class Clients
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    /// <summary>curl exit codes meaning "refused or reset": 7 couldn't connect, 56 failure receiving, and 55 when the
    /// reset comes between the connect and curl asking for the peer's address (<c>getpeername() failed with errno 107</c>:
    /// a denial is reset that fast once its log line costs the proxy little).</summary>
    public static readonly int[] RefusedOrReset = [7, 55, 56];

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

    /// <summary>
    /// Python's <c>socket.create_connection</c> (which falls over to a name's next address on ECONNREFUSED), one
    /// connection after another to an echo server at <paramref name="host"/>:<paramref name="port"/> (a name or an
    /// address): each sends <c>ping N\n</c>, half-closes, reads to the end and must get its line back (5 s per
    /// connection). Prints <c>try N: ...</c> for each failed one and ends with <c>ok K of COUNT</c>; with
    /// <paramref name="stopAtFirstFailure"/>, stops at the first failure.
    /// </summary>
    public static Task<CommandResult> EchoConnectionsAsync(string namespaceName, string host, int port, int count, TimeSpan timeout, bool stopAtFirstFailure = false)
    {
        string script = $$"""
            import socket
            ok = 0
            for i in range({{count}}):
                try:
                    s = socket.create_connection(("{{host}}", {{port}}), timeout=5)
                    s.sendall(b"ping %d\n" % i)
                    s.shutdown(socket.SHUT_WR)
                    data = b""
                    while True:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    s.close()
                    ok += data == b"ping %d\n" % i
                    if data != b"ping %d\n" % i:
                        print("try %d: got %r" % (i, data))
                        if {{(stopAtFirstFailure ? "True" : "False")}}:
                            break
                except OSError as e:
                    print("try %d: %s" % (i, e))
                    if {{(stopAtFirstFailure ? "True" : "False")}}:
                        break
            print("ok %d of {{count}}" % ok)
            """;
        return Command.RunInNamespaceAsync(namespaceName, timeout, "python3", "-c", script);
    }
}
