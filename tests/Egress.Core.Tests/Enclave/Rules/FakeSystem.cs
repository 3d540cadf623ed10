using Egress.Configuration;
using Egress.Enclave.Rules;

namespace Egress.Tests.Enclave.Rules;

/// <summary>
/// A stand-in for <c>ip</c> and the iptables programs, for testing the rules command without root: a nat and a filter
/// table per netfilter backend and family (the nft and legacy tables are separate, as in the kernel), the routes, and the state
/// of lo. A backend can be made to fail the way it fails on a kernel without it.
/// </summary>
internal sealed class FakeSystem : ICommandRunner, ISysctl
{
    public const string NoNfTables = "iptables: Failed to initialize nft: Protocol not supported";

    public const string NoLegacyNat = "iptables v1.8.9 (legacy): can't initialize iptables table `nat': Table does not exist (do you need to insmod?)";

    private readonly Dictionary<(NetfilterBackend Backend, bool IPv6, string Table), List<string>> _tables = [];

    /// <summary>The programs on PATH.</summary>
    public HashSet<string> Programs { get; } =
        ["ip", "iptables", "ip6tables", "iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy"];

    /// <summary>What <c>iptables -V</c> says; its backend is the one plain iptables and ip6tables reach.</summary>
    public string PlainVersion { get; set; } = "iptables v1.8.9 (nf_tables)";

    /// <summary>Backends that fail every command, with the message they print (and exit code 1, or 0 if <see cref="FailuresExitZero"/>).</summary>
    public Dictionary<NetfilterBackend, string> Broken { get; } = [];

    public bool FailuresExitZero { get; set; }

    public HashSet<string> Routes { get; } = [];

    /// <summary>Addresses on lo added by the rules, as "-4 127.0.0.2/32".</summary>
    public HashSet<string> Addresses { get; } = [];

    public bool LoopbackUp { get; set; }

    /// <summary>Whether a legacy nat table exists: as in the kernel, from the first legacy nat command on.</summary>
    public bool LegacyNatInUse { get; set; }

    /// <summary>Kernel parameters by sysctl name; a missing one does not exist on this kernel.</summary>
    public Dictionary<string, string> Sysctls { get; } = new() { ["net.ipv4.tcp_timestamps"] = "1" };

    /// <summary>When set, writing a kernel parameter fails with this exception.</summary>
    public Exception? SysctlWriteFailure { get; set; }

    /// <summary>Every command run, as a command line.</summary>
    public List<string> Calls { get; } = [];

    private NetfilterBackend PlainBackend => PlainVersion.Contains("nf_tables", StringComparison.Ordinal) ? NetfilterBackend.Nft : NetfilterBackend.Legacy;

    /// <summary>The rules of one table (nat unless named), as <c>iptables -S</c> prints them without the policies.</summary>
    public IReadOnlyList<string> Table(NetfilterBackend backend, bool ipv6, string table = "nat") =>
        _tables.TryGetValue((backend, ipv6, table), out var rules) ? rules : [];

    public bool Exists(string program) => Programs.Contains(program);

    public string? Read(string name) => Sysctls.GetValueOrDefault(name);

    public void Write(string name, string value)
    {
        if (SysctlWriteFailure is not null)
        {
            throw SysctlWriteFailure;
        }

        Sysctls[name] = value;
    }

    public ProcessResult Run(string program, IReadOnlyList<string> arguments)
    {
        Calls.Add(string.Join(' ', [program, .. arguments]));
        if (!Programs.Contains(program))
        {
            return new ProcessResult(127, string.Empty, $"{program}: cannot run it: No such file or directory");
        }

        return program == "ip" ? Ip([.. arguments]) : Netfilter(program, [.. arguments]);
    }

    private ProcessResult Netfilter(string program, string[] arguments)
    {
        var backend = program.EndsWith("-nft", StringComparison.Ordinal) ? NetfilterBackend.Nft
            : program.EndsWith("-legacy", StringComparison.Ordinal) ? NetfilterBackend.Legacy
            : PlainBackend;
        if (arguments is ["-V"])
        {
            return program is "iptables" or "ip6tables"
                ? Ok(PlainVersion + "\n")
                : Ok($"{program} v1.8.9 ({(backend == NetfilterBackend.Nft ? "nf_tables" : "legacy")})\n");
        }

        if (Broken.TryGetValue(backend, out var message))
        {
            return new ProcessResult(FailuresExitZero ? 0 : 1, string.Empty, message + "\n");
        }

        if (arguments is not ["-w", "-t", "nat" or "filter", var verb, var chain, .. var rule])
        {
            throw new InvalidOperationException($"unexpected command: {program} {string.Join(' ', arguments)}");
        }

        string tableName = arguments[2];
        LegacyNatInUse |= backend == NetfilterBackend.Legacy && tableName == "nat";
        var key = (backend, program.StartsWith("ip6", StringComparison.Ordinal), tableName);
        if (!_tables.TryGetValue(key, out var table))
        {
            _tables[key] = table = [];
        }

        var line = string.Join(' ', ["-A", chain, .. rule]);
        switch (verb)
        {
            case "-S":
                return Ok(string.Join('\n', [$"-P {chain} ACCEPT", .. table.Where(r => r.StartsWith($"-A {chain} ", StringComparison.Ordinal))]) + "\n");
            case "-C":
                return table.Contains(line) ? Ok(string.Empty) : BadRule();
            case "-A":
                table.Add(line);
                return Ok(string.Empty);
            case "-D":
                return table.Remove(line) ? Ok(string.Empty) : BadRule();
            default:
                throw new InvalidOperationException($"unexpected iptables verb {verb}");
        }
    }

    private ProcessResult Ip(string[] arguments)
    {
        switch (arguments)
        {
            case ["link", "show", "dev", "lo", "up"]:
                return Ok(LoopbackUp ? "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n" : string.Empty);
            case ["link", "set", "dev", "lo", "up"]:
                LoopbackUp = true;
                return Ok(string.Empty);
        }

        switch (arguments)
        {
            case [var addressFamily, "addr", "show", "dev", "lo", "to", var shown]:
                return Ok(Addresses.Contains($"{addressFamily} {shown}") ? $"1: lo: <LOOPBACK,UP,LOWER_UP>\n    inet {shown} scope global lo\n" : string.Empty);
            case [var addressFamily, "addr", "replace", var added, "dev", "lo", ..]:
                Addresses.Add($"{addressFamily} {added}");
                return Ok(string.Empty);
            case [var addressFamily, "addr", "del", var removed, "dev", "lo"]:
                return Addresses.Remove($"{addressFamily} {removed}") ? Ok(string.Empty) : new ProcessResult(2, string.Empty, "RTNETLINK answers: Cannot assign requested address\n");
        }

        var (family, rest) = arguments is ["-6", .. var after] ? ("-6 ", after) : (string.Empty, arguments);
        if (rest is not ["route", var verb, .. var route])
        {
            throw new InvalidOperationException($"unexpected command: ip {string.Join(' ', arguments)}");
        }

        var entry = family + string.Join(' ', route);
        switch (verb)
        {
            case "show":
                return Ok(Routes.Contains(entry) ? string.Join(' ', route) + "\n" : string.Empty);
            case "replace":
                if (!LoopbackUp)
                {
                    return new ProcessResult(2, string.Empty, "Error: Nexthop has invalid gateway.\n");
                }

                Routes.Add(entry);
                return Ok(string.Empty);
            case "del":
                return Routes.Remove(entry) ? Ok(string.Empty) : new ProcessResult(2, string.Empty, "RTNETLINK answers: No such process\n");
            default:
                throw new InvalidOperationException($"unexpected ip route verb {verb}");
        }
    }

    private static ProcessResult Ok(string output) => new(0, output, string.Empty);

    private static ProcessResult BadRule() => new(1, string.Empty, "iptables: Bad rule (does a matching rule exist in that chain?).\n");
}
