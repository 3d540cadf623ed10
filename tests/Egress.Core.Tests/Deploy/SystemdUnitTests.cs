using System.Text.RegularExpressions;
using Egress.Configuration;

namespace Egress.Tests.Deploy;

/// <summary>
/// The shipped unit (deploy/host/egress-host.service) read as systemd would: under <c>DynamicUser=yes</c> and
/// <c>ProtectSystem=strict</c> the whole file system is read-only to egress-host except the directories the unit
/// grants, so an <c>audit_log</c> file works only there. Before, the unit granted none, and the path the
/// configuration's own error text suggests (<c>/var/log/egress/audit.jsonl</c>) could not be opened: egress-host
/// exited 2, which <c>RestartPreventExitStatus=2</c> keeps down.
/// </summary>
[TestFixture]
public sealed partial class SystemdUnitTests
{
    [Test]
    public void TheSuggestedAuditLogPathIsWritableUnderTheShippedUnit()
    {
        string suggested = SuggestedAuditLogPath();
        var service = ServiceSection();

        Assert.Multiple(() =>
        {
            Assert.That(service["DynamicUser"], Is.EqualTo(new[] { "yes" }), "the test assumes the unit's sandbox");
            Assert.That(service["ProtectSystem"], Is.EqualTo(new[] { "strict" }), "the test assumes the unit's sandbox");
            Assert.That(WritableDirectories(service), Has.Some.Matches<string>(directory => IsUnder(suggested, directory)),
                $"{suggested} (the path the audit_log error suggests) is in no directory the unit makes writable");
        });
    }

    /// <summary>From a red-team trial: egress-host reads the parent's own addresses, and is told of their changes, over
    /// rtnetlink (getifaddrs, <c>NetworkChange</c>). Under the unit's <c>RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
    /// AF_VSOCK</c> (reproduced with a seccomp filter that fails socket(AF_NETLINK) with EAFNOSUPPORT, as systemd's does)
    /// it died at start with an unhandled NetworkInformationException (97).</summary>
    [Test]
    public void TheUnitAllowsNetlinkForTheParentsOwnAddresses()
    {
        var service = ServiceSection();

        Assert.That(service["RestrictAddressFamilies"], Does.Contain("AF_NETLINK").And.Contain("AF_VSOCK").And.Contain("AF_INET6"));
    }

    /// <summary>From an operator's trial: the unit granted <c>/dev/vsock</c> read-write "because egress-host looks at it
    /// to tell whether VSOCK exists", which it does not (it only creates AF_VSOCK sockets, which need no device node;
    /// <see cref="Egress.Vsock.VsockSocket.IsSupported"/> is used by tests alone). A device it never opens is not granted.</summary>
    [Test]
    public void TheUnitGrantsNoDeviceNode()
    {
        var service = ServiceSection();

        Assert.Multiple(() =>
        {
            Assert.That(service["DevicePolicy"], Is.EqualTo(new[] { "closed" }));
            Assert.That(service.ContainsKey("DeviceAllow"), Is.False, () => string.Join(", ", service["DeviceAllow"]));
        });
    }

    /// <summary>From a soak of the shipped builds (deploy/README.md, "egress-host's memory under sustained load"): with
    /// glibc's default malloc arenas (up to 16 on a 2-vCPU machine) egress-host's resident malloc memory grew in steps
    /// through 78 minutes of sustained load (8.3 MiB after a minute, 23.8 MiB from minute 55) while its live native
    /// allocations stayed at about 3 MiB; with <c>MALLOC_ARENA_MAX=2</c> it held at 9.3 MiB, at no throughput or
    /// connection rate measured side by side. glibc reads the variable when the process starts, so only the unit can
    /// set it.</summary>
    [Test]
    public void TheUnitCapsGlibcMallocArenasAtTwo()
    {
        var service = ServiceSection();

        Assert.That(service.GetValueOrDefault("Environment", []), Does.Contain("MALLOC_ARENA_MAX=2"));
    }

    [Test]
    public void TheDeployReadmeAndTheConfigurationReferenceNameTheWritableAuditLogDirectory()
    {
        string directory = Path.GetDirectoryName(SuggestedAuditLogPath())! + "/";
        Assert.Multiple(() =>
        {
            Assert.That(File.ReadAllText(Path.Combine(RepositoryFiles.Root(), "deploy", "README.md")), Does.Contain("LogsDirectory=egress").And.Contain(directory));
            Assert.That(File.ReadAllText(Path.Combine(RepositoryFiles.Root(), "docs", "configuration.md")), Does.Contain("LogsDirectory=egress").And.Contain(directory));
        });
    }

    // The example in the audit_log error text ("expected \"stdout\" or an absolute file path (e.g. \"...\")").
    private static string SuggestedAuditLogPath()
    {
        var error = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse("[host]\naudit_log = \"audit.jsonl\"\n", "enclave.toml"))!;
        Match example = ExampleInError().Match(error.Message);
        Assert.That(example.Success, Is.True, error.Message);
        return example.Groups[1].Value;
    }

    // LogsDirectory=, StateDirectory=, CacheDirectory= and RuntimeDirectory= are made writable (and owned by the dynamic
    // user) under ProtectSystem=strict; ReadWritePaths= names absolute paths.
    private static IEnumerable<string> WritableDirectories(Dictionary<string, string[]> service)
    {
        (string Key, string Root)[] managed = [("LogsDirectory", "/var/log"), ("StateDirectory", "/var/lib"), ("CacheDirectory", "/var/cache"), ("RuntimeDirectory", "/run")];
        foreach (var (key, root) in managed)
        {
            foreach (string name in service.GetValueOrDefault(key, []))
            {
                yield return $"{root}/{name.Split(':')[0]}";
            }
        }

        foreach (string path in service.GetValueOrDefault("ReadWritePaths", []))
        {
            yield return path.TrimStart('-', '+');
        }
    }

    private static bool IsUnder(string path, string directory) => path.StartsWith(directory.TrimEnd('/') + "/", StringComparison.Ordinal);

    // The [Service] section: each key's values (space-separated, later lines of the same key appended).
    private static Dictionary<string, string[]> ServiceSection()
    {
        var values = new Dictionary<string, string[]>(StringComparer.Ordinal);
        string? section = null;
        foreach (string raw in File.ReadAllLines(Path.Combine(RepositoryFiles.Root(), "deploy", "host", "egress-host.service")))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line[0] is '#' or ';')
            {
                continue;
            }

            if (line[0] == '[')
            {
                section = line;
                continue;
            }

            int equals = line.IndexOf('=', StringComparison.Ordinal);
            if (section != "[Service]" || equals < 0)
            {
                continue;
            }

            string key = line[..equals].Trim();
            string[] parts = line[(equals + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            values[key] = [.. values.GetValueOrDefault(key, []), .. parts];
        }

        return values;
    }

    [GeneratedRegex("""e\.g\. "([^"]+)"\)""")]
    private static partial Regex ExampleInError();
}
