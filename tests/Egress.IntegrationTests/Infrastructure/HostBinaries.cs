namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// The hosts under test, built next to this assembly by the project references (egress-enclave.dll,
/// egress-host.dll), run as <c>dotnet &lt;dll&gt;</c>. Missing binaries are a failure, not a skip.
/// EGRESS_ENCLAVE_BIN=/path/to/egress-enclave runs that executable instead (e.g. the Native AOT publish the enclave
/// image ships); egress-host stays the built one.
/// </summary>
internal static class HostBinaries
{
    public static string EnclaveDll => Require("egress-enclave.dll");

    public static string HostDll => Require("egress-host.dll");

    /// <summary>The dotnet muxer running the tests (so a child gets the same runtime), else `dotnet` from PATH.</summary>
    public static string Dotnet
    {
        get
        {
            var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
            if (!string.IsNullOrEmpty(host) && File.Exists(host))
            {
                return host;
            }

            var current = Environment.ProcessPath;
            return current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet" ? current : "dotnet";
        }
    }

    /// <summary>argv for `egress-enclave ARGS`.</summary>
    public static string[] Enclave(params string[] arguments) =>
        Environment.GetEnvironmentVariable("EGRESS_ENCLAVE_BIN") is { Length: > 0 } executable
            ? [executable, .. arguments]
            : [Dotnet, EnclaveDll, .. arguments];

    /// <summary>argv for `egress-host ARGS`.</summary>
    public static string[] Host(params string[] arguments) => [Dotnet, HostDll, .. arguments];

    private static string Require(string fileName)
    {
        var path = Path.Combine(AppContext.BaseDirectory, fileName);
        if (!File.Exists(path))
        {
            Assert.Fail($"{fileName} is missing from {AppContext.BaseDirectory}: build the hosts (src/Egress.Enclave, src/Egress.Host).");
        }

        return path;
    }
}
