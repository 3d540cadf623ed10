using System.Diagnostics;
using Egress.Enclave.Rules;
using Egress.Tests.Interception;

namespace Egress.Tests.Enclave.Rules;

/// <summary>
/// <c>egress-enclave rules</c> as a user runs it: the built egress-enclave.dll under <c>ip netns exec</c> in a fresh
/// namespace (apply, idempotence, remove, the refusal where other interfaces exist, the legacy netfilter backend,
/// the proxy endpoints from the configuration), and printing without root.
/// </summary>
[NonParallelizable]
public sealed class RulesCommandTests
{
    private static readonly RedirectRule[] NftRules = [.. RedirectRules.For().Select(Nft)];

    private static readonly string TimestampsLeft =
        $"left: {TcpTimestamps.Description} (harmless without the rules; `sysctl -w net.ipv4.tcp_timestamps=1` restores the kernel default)";

    private NetworkNamespace? _namespace;
    private string _directory = null!;
    private string _config = null!;

    private static string EnclaveDll
    {
        get
        {
            // tests/Egress.Core.Tests/bin/CONFIGURATION/net10.0/ -> src/Egress.Enclave/bin/CONFIGURATION/net10.0/
            var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/'));
            string configuration = output.Parent!.Name;
            string root = output.Parent.Parent!.Parent!.Parent!.Parent!.FullName;
            return Path.Combine(root, "src", "Egress.Enclave", "bin", configuration, output.Name, "egress-enclave.dll");
        }
    }

    [SetUp]
    public void CreateBareNamespace()
    {
        if (NetworkNamespace.Unavailability() is { } reason)
        {
            Assert.Ignore($"SKIPPED: the rules command tests did not run: {reason}.");
        }

        Assume.That(File.Exists(EnclaveDll), Is.True, $"egress-enclave.dll not built at {EnclaveDll}");
        Assume.That(File.Exists("/proc/net/if_inet6"), Is.True, "these tests expect IPv6 to be available");
        _namespace = NetworkNamespace.Create(bare: true);
        _directory = Directory.CreateTempSubdirectory("egress-rules-").FullName;
        if (!OperatingSystem.IsWindows())
        {
            // Readable by the unprivileged user the printing test runs as.
            File.SetUnixFileMode(_directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        }
        _config = WriteConfig("defaults.toml", "# all defaults: proxy_listen = [\"127.0.0.1:4444\", \"[::1]:4444\"], netfilter = \"auto\"\n");
    }

    [TearDown]
    public void DeleteNamespace()
    {
        _namespace?.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Test]
    public void ApplyAddsExactlyTheRulesThenIsIdempotentAndRemoveLeavesNone()
    {
        var first = RunInNamespace("rules", "--apply", "--config", _config);
        var second = RunInNamespace("rules", "--apply", "--config", _config);
        string natV4 = _namespace!.Run("iptables-nft", "-t", "nat", "-S");
        string natV6 = _namespace.Run("ip6tables-nft", "-t", "nat", "-S");
        string filterV4 = _namespace.Run("iptables-nft", "-t", "filter", "-S");
        string filterV6 = _namespace.Run("ip6tables-nft", "-t", "filter", "-S");
        string routesV4 = _namespace.Run("ip", "route", "show");
        string routesV6Default = _namespace.Run("ip", "-6", "route", "show", "default");
        string loAddresses = _namespace.Run("ip", "addr", "show", "dev", "lo");
        string timestamps = _namespace.Run("cat", "/proc/sys/net/ipv4/tcp_timestamps");
        string[] proxyLines =
        [
            "proxy: 127.0.0.1:4444 (redirected IPv4 TCP goes here: the proxy must listen on it)",
            "proxy: [::1]:4444 (redirected IPv6 TCP goes here: the proxy must listen on it)",
            "dns: 127.0.0.1:53 (redirected IPv4 DNS, UDP and TCP, goes here: the DNS forwarder must listen on it)",
            "dns: [::1]:53 (redirected IPv6 DNS, UDP and TCP, goes here: the DNS forwarder must listen on it)",
        ];
        const string Chosen = "netfilter: nft (iptables-nft works; no legacy nat table is in use, so no rules are there)";

        Assert.That(first, Is.EqualTo(new CommandResult(0,
            [Chosen, "added: loopback interface up: ip link set dev lo up", .. NftRules.Select(r => $"added: {r.Description}: {r.AddCommandLine}"),
                $"added: {TcpTimestamps.Description}: sysctl -w net.ipv4.tcp_timestamps=2 (was 1)", .. proxyLines], [])));
        Assert.That(second, Is.EqualTo(new CommandResult(0,
            [Chosen, "present: loopback interface up", .. NftRules.Select(r => $"present: {Label(r)}"), $"present: {TcpTimestamps.Description}", .. proxyLines], [])));
        Assert.That(timestamps.Trim(), Is.EqualTo("2"), "set in the enclave's network namespace");
        Assert.That(Rules(natV4), Is.EqualTo(new[]
        {
            "-A OUTPUT ! -d 127.0.0.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.1:53",
            "-A OUTPUT ! -d 127.0.0.1/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.1:53",
            "-A OUTPUT ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 127.0.0.1:4444",
            "-A POSTROUTING -s 0.0.0.0/32 -o lo -j SNAT --to-source 127.0.0.1",
        }));
        Assert.That(Rules(natV6), Is.EqualTo(new[]
        {
            "-A OUTPUT ! -d ::1/128 -p udp -m udp --dport 53 -j DNAT --to-destination [::1]:53",
            "-A OUTPUT ! -d ::1/128 -p tcp -m tcp --dport 53 -j DNAT --to-destination [::1]:53",
            "-A OUTPUT -d fd65:6772:6573::1/128 -p tcp -j RETURN",
            "-A OUTPUT ! -d ::1/128 -p tcp -j DNAT --to-destination [::1]:4444",
            "-A POSTROUTING -s ::/128 -o lo -j SNAT --to-source ::1",
        }));
        Assert.That(Rules(filterV4), Is.EqualTo(new[] { "-A OUTPUT -p udp -m conntrack --ctstate NEW -m addrtype ! --dst-type LOCAL -j REJECT --reject-with icmp-port-unreachable" }));
        Assert.That(Rules(filterV6), Is.EqualTo(new[] { "-A OUTPUT -p udp -m conntrack --ctstate NEW -m addrtype ! --dst-type LOCAL -j REJECT --reject-with icmp6-port-unreachable" }));
        Assert.That(routesV4.Trim(), Is.EqualTo("default via 127.0.0.1 dev lo src 127.0.0.1"));
        Assert.That(routesV6Default, Does.StartWith("default dev lo "));
        Assert.That(loAddresses, Does.Contain("inet 127.0.0.2/32").And.Contain("inet6 fd65:6772:6573::1/128"));

        var removed = RunInNamespace("rules", "--remove", "--config", _config);
        var again = RunInNamespace("rules", "--remove", "--config", _config);

        Assert.That(removed, Is.EqualTo(new CommandResult(0, [Chosen, .. NftRules.Reverse().Select(r => $"removed: {Label(r)}"), TimestampsLeft], [])));
        Assert.That(again, Is.EqualTo(new CommandResult(0, [Chosen, .. NftRules.Reverse().Select(r => $"absent: {Label(r)}"), TimestampsLeft], [])));
        Assert.That(File.Exists("/proc/net/ip_tables_names") ? _namespace.Run("cat", "/proc/net/ip_tables_names") : string.Empty, Does.Not.Contain("nat"),
            "no legacy nat table was created in this namespace");
        Assert.That(Rules(_namespace.Run("iptables-nft", "-t", "nat", "-S")), Is.Empty);
        Assert.That(_namespace.Run("ip", "addr", "show", "dev", "lo"), Does.Not.Contain("127.0.0.2").And.Not.Contain("fd65:"));
        Assert.That(Rules(_namespace.Run("ip6tables-nft", "-t", "nat", "-S")), Is.Empty);
        Assert.That(Rules(_namespace.Run("iptables-nft", "-t", "filter", "-S")), Is.Empty);
        Assert.That(Rules(_namespace.Run("ip6tables-nft", "-t", "filter", "-S")), Is.Empty);
        Assert.That(_namespace.Run("ip", "route", "show").Trim(), Is.Empty);
        Assert.That(_namespace.Run("ip", "-6", "route", "show", "default").Trim(), Is.Empty);
    }

    [Test]
    public void TheConfiguredProxyListenEndpointsAreTheDnatTargets()
    {
        string config = WriteConfig("ports.toml", "[enclave]\nproxy_listen = [\"127.0.0.1:8080\", \"[::1]:8081\"]\n");

        var applied = RunInNamespace("rules", "--apply", "--config", config);

        Assert.That(applied.ExitCode, Is.Zero, applied.ToString());
        Assert.That(Rules(_namespace!.Run("iptables", "-t", "nat", "-S"))[2], Is.EqualTo("-A OUTPUT ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 127.0.0.1:8080"));
        Assert.That(Rules(_namespace.Run("ip6tables", "-t", "nat", "-S"))[3], Is.EqualTo("-A OUTPUT ! -d ::1/128 -p tcp -j DNAT --to-destination [::1]:8081"));
        Assert.That(applied.Output.Where(l => l.StartsWith("proxy: ", StringComparison.Ordinal)).Select(l => l.Split(' ')[1]), Is.EqualTo(new[] { "127.0.0.1:8080", "[::1]:8081" }));
    }

    /// <summary>The real iptables' listing (its own option order) of a rule left by an apply with another proxy port is
    /// found, and the apply changes nothing.</summary>
    [Test]
    public void AnApplyWithAnotherProxyPortRefusesWhileTheEarlierRedirectIsThere()
    {
        Assert.That(RunInNamespace("rules", "--apply", "--config", _config).ExitCode, Is.Zero);
        string before = _namespace!.Run("iptables", "-t", "nat", "-S");
        string config = WriteConfig("ports.toml", "[enclave]\nproxy_listen = [\"127.0.0.1:8080\", \"[::1]:8081\"]\n");

        var applied = RunInNamespace("rules", "--apply", "--config", config);

        Assert.That(applied.ExitCode, Is.EqualTo(1), applied.ToString());
        Assert.That(applied.Error, Has.Some.Contains("already redirects elsewhere: '-A OUTPUT ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 127.0.0.1:4444'"));
        Assert.That(_namespace.Run("iptables", "-t", "nat", "-S"), Is.EqualTo(before));
    }

    [Test]
    public void TheLegacyBackendFromTheConfigurationHoldsTheRulesAndAutoRemoveFindsThem()
    {
        string config = WriteConfig("legacy.toml", "[enclave]\nnetfilter = \"legacy\"\n");

        var applied = RunInNamespace("rules", "--apply", "--config", config);
        string legacyV4 = _namespace!.Run("iptables-legacy", "-t", "nat", "-S");
        string legacyV6 = _namespace.Run("ip6tables-legacy", "-t", "nat", "-S");
        string nftV4 = _namespace.Run("iptables-nft", "-t", "nat", "-S");
        var autoApplied = RunInNamespace("rules", "--apply", "--config", _config);
        string nftAfterAuto = _namespace.Run("iptables-nft", "-t", "nat", "-S");
        var removed = RunInNamespace("rules", "--remove", "--config", _config);

        Assert.That(applied.ExitCode, Is.Zero, applied.ToString());
        Assert.That(applied.Output[0], Is.EqualTo($"netfilter: legacy (set by [enclave] netfilter in {config}:2:13; iptables-legacy works)"));
        Assert.That(Rules(legacyV4), Is.EqualTo(new[]
        {
            "-A OUTPUT ! -d 127.0.0.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.1:53",
            "-A OUTPUT ! -d 127.0.0.1/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.1:53",
            "-A OUTPUT ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 127.0.0.1:4444",
            "-A POSTROUTING -s 0.0.0.0/32 -o lo -j SNAT --to-source 127.0.0.1",
        }));
        Assert.That(Rules(legacyV6), Has.Length.EqualTo(5));
        Assert.That(Rules(nftV4), Is.Empty, "nothing in nf_tables");

        Assert.That(autoApplied.ExitCode, Is.Zero, autoApplied.ToString());
        Assert.That(autoApplied.Output[0], Does.StartWith("netfilter: legacy (both work, but the Egress rules are already in the iptables-legacy tables"));
        Assert.That(Rules(nftAfterAuto), Is.Empty, "auto stays with the tables that hold the rules");

        Assert.That(removed.ExitCode, Is.Zero, removed.ToString());
        Assert.That(removed.Output[0], Is.EqualTo("netfilter: nft and legacy (both work; removing from both)"));
        Assert.That(removed.Output, Does.Contain("removed: redirect all other IPv4 TCP not to loopback to the proxy (iptables-legacy)")
            .And.Contain("absent: redirect all other IPv4 TCP not to loopback to the proxy (iptables-nft)"));
        Assert.That(Rules(_namespace.Run("iptables-legacy", "-t", "nat", "-S")), Is.Empty);
        Assert.That(Rules(_namespace.Run("ip6tables-legacy", "-t", "nat", "-S")), Is.Empty);
    }

    [Test]
    public void TheNetfilterOptionOverridesTheConfiguration()
    {
        string config = WriteConfig("nft.toml", "[enclave]\nnetfilter = \"nft\"\n");

        var applied = RunInNamespace("rules", "--apply", "--config", config, "--netfilter", "legacy");

        Assert.That(applied.ExitCode, Is.Zero, applied.ToString());
        Assert.That(applied.Output[0], Is.EqualTo("netfilter: legacy (set by --netfilter; iptables-legacy works)"));
        Assert.That(Rules(_namespace!.Run("iptables-legacy", "-t", "nat", "-S")), Has.Length.EqualTo(4));
        Assert.That(Rules(_namespace.Run("iptables-nft", "-t", "nat", "-S")), Is.Empty);
    }

    // A new user's trial: printing with --netfilter legacy probed iptables-legacy, which created the legacy nat table
    // here; auto then found it in use, and iptables-nft warned about it on every call.
    [Test]
    public void PrintAndRemoveWithLegacyNamedCreateNoLegacyNatTable()
    {
        var printed = RunInNamespace("rules", "--config", _config, "--netfilter", "legacy");
        var removed = RunInNamespace("rules", "--remove", "--config", _config, "--netfilter", "legacy");
        string[] legacyTables = [.. new[] { "/proc/net/ip_tables_names", "/proc/net/ip6_tables_names" }
            .Where(File.Exists).Select(path => _namespace!.Run("cat", path))];
        var auto = RunInNamespace("rules", "--config", _config);

        Assert.Multiple(() =>
        {
            Assert.That(printed.ExitCode, Is.Zero, printed.ToString());
            Assert.That(printed.Output[1], Is.EqualTo("# netfilter: legacy (set by --netfilter; not probed, that would create the legacy nat table)"));
            Assert.That(printed.Output, Does.Contain("iptables-legacy -w -t nat -A OUTPUT -p tcp ! -d 127.0.0.0/8 -j DNAT --to-destination 127.0.0.1:4444"));
            Assert.That(removed.ExitCode, Is.Zero, removed.ToString());
            Assert.That(removed.Output[0], Is.EqualTo("netfilter: legacy (set by --netfilter; no legacy nat table is in use, so no rules are there)"));
            Assert.That(legacyTables, Has.None.Contains("nat"), "no legacy nat table was created in this namespace");
            Assert.That(auto.Output[1], Is.EqualTo("# netfilter: nft (iptables-nft works; no legacy nat table is in use, so no rules are there)"), auto.ToString());
        });
    }

    [Test]
    public void BadInputIsRefusedBeforeAnythingChanges()
    {
        string offLoopback = WriteConfig("off-loopback.toml", "[enclave]\nproxy_listen = [\"10.1.2.3:4444\"]\n");
        // The second address is the one at fault: the error points at it (it pointed at the array's start).
        string secondOffLoopback = WriteConfig("second-off-loopback.toml", "[enclave]\nproxy_listen = [\"127.0.0.1:4444\", \"[2001:db8::1]:4444\"]\n");

        var proxyPort = RunInNamespace("rules", "--apply", "--config", _config, "--proxy-port", "8080");
        var noConfig = RunInNamespace("rules", "--apply");
        var notLoopback = RunInNamespace("rules", "--apply", "--config", offLoopback);
        var secondNotLoopback = RunInNamespace("rules", "--apply", "--config", secondOffLoopback);
        var badBackend = RunInNamespace("rules", "--apply", "--config", _config, "--netfilter", "nftables");
        var logLevel = RunInNamespace("rules", "--config", _config, "--log-level", "Debug");
        var netfilterElsewhere = RunInNamespace("check", "example.com", "--config", _config, "--netfilter", "legacy");
        // Accepted and ignored before the move to System.CommandLine: a run option given to another verb.
        var logFormatOnCheck = RunInNamespace("check", "example.com", "--config", _config, "--log-format", "json");
        var runOptionBeforeRules = RunInNamespace("--log-level", "Debug", "rules", "--config", _config);

        Assert.That(proxyPort, Is.EqualTo(new CommandResult(2, [], ["error: --proxy-port is gone: rules redirect to the proxy's [enclave] proxy_listen addresses, read from --config PATH"])));
        Assert.That(noConfig, Is.EqualTo(new CommandResult(2, [], ["error: no configuration: pass --config PATH (enclave.toml), or run where ./enclave.toml exists"])));
        Assert.That(notLoopback, Is.EqualTo(new CommandResult(2, [],
            [$"{offLoopback}:2:17: error: The proxy's IPv4 listen address (10.1.2.3:4444) cannot take redirected connections: they travel over lo, so the proxy must also listen on a loopback address, such as 127.0.0.1:4444. (key 'enclave.proxy_listen')"])));
        Assert.That(secondNotLoopback.Error, Is.EqualTo(new[]
            { $"{secondOffLoopback}:2:35: error: The proxy's IPv6 listen address ([2001:db8::1]:4444) cannot take redirected connections: they travel over lo, so the proxy must also listen on a loopback address, such as [::1]:4444. (key 'enclave.proxy_listen')" }));
        Assert.That(badBackend, Is.EqualTo(new CommandResult(2, [], ["error: --netfilter 'nftables': expected \"auto\", \"nft\" (nf_tables, iptables-nft) or \"legacy\" (iptables-legacy)"])));
        // After the verb as before it, one line that names the option (its value is not reported again).
        Assert.That(logLevel, Is.EqualTo(new CommandResult(2, [], ["error: --log-level does not apply to 'rules'"])));
        Assert.That(netfilterElsewhere, Is.EqualTo(new CommandResult(2, [], ["error: --netfilter does not apply to 'check' (an option of 'rules')"])));
        Assert.That(logFormatOnCheck, Is.EqualTo(new CommandResult(2, [], ["error: --log-format does not apply to 'check'"])));
        Assert.That(runOptionBeforeRules, Is.EqualTo(new CommandResult(2, [], ["error: --log-level does not apply to 'rules'"])));
        Assert.That(Rules(_namespace!.Run("iptables", "-t", "nat", "-S")), Is.Empty);
        Assert.That(_namespace.Run("ip", "route", "show").Trim(), Is.Empty);
    }

    /// <summary>An operator's trial (run here for this fixture's way of starting egress-enclave): report-to-allowlist took
    /// an option written after it for a log file and said "Could not find file '.../--log-level'".</summary>
    [Test]
    public void ReportToAllowlistRefusesAnOptionItDoesNotTakeInsteadOfReadingItAsAFile()
    {
        var result = Run(["dotnet", EnclaveDll, "report-to-allowlist", "--log-level", "Debug", "enclave.log"], _directory);

        Assert.That(result, Is.EqualTo(new CommandResult(2, [],
            ["error: --log-level does not apply to 'report-to-allowlist'; a log file whose name starts with '-' is given as ./--log-level"])));
    }

    [Test]
    public void ApplyRefusesWhereOtherInterfacesExistUnlessForced()
    {
        _namespace!.Run("ip", "link", "add", "egt0", "type", "veth", "peer", "name", "egt1");

        var refused = RunInNamespace("rules", "--apply", "--config", _config);
        string natAfterRefusal = _namespace.Run("iptables", "-t", "nat", "-S");
        var forced = RunInNamespace("rules", "--apply", "--force", "--config", _config);

        Assert.That(refused.ExitCode, Is.EqualTo(1));
        Assert.That(refused.Output, Is.Empty, "refused before probing netfilter");
        Assert.That(refused.Error, Has.Count.EqualTo(1));
        Assert.That(refused.Error[0], Does.StartWith("error: this network namespace has interfaces other than lo (").And.Contain("egt0").And.Contain("egt1").And.EndWith("Use --force if you really mean it."));
        Assert.That(Rules(natAfterRefusal), Is.Empty, "nothing applied");
        Assert.That(forced.ExitCode, Is.Zero, string.Join('\n', forced.Error));
        Assert.That(Rules(_namespace.Run("iptables", "-t", "nat", "-S")), Has.Length.EqualTo(4));
    }

    [Test]
    public void PrintNeedsNoRootAndShowsAddThenRemoveLines()
    {
        string config = WriteConfig("print.toml", "[enclave]\nproxy_listen = [\"127.0.0.1:8080\", \"[::1]:8080\"]\n");

        var printed = Run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp", "dotnet", EnclaveDll, "rules", "--config", config]);

        var rules = RedirectRules.For(8080);
        string[] expected =
        [
            "# Egress redirect rules (egress-enclave rules --apply runs these idempotently)",
            "# netfilter: not probed (that needs root); shown with plain iptables/ip6tables. rules --apply uses iptables-nft where nf_tables works, else iptables-legacy",
            "# bring loopback up if it is down (an enclave may boot with lo down; --remove leaves it up)",
            "ip link set dev lo up",
            .. rules.SelectMany(r => new[] { $"# {r.Description}", r.AddCommandLine }),
            $"# {TcpTimestamps.Description} (only where it is 1; --remove leaves it)",
            "sysctl -w net.ipv4.tcp_timestamps=2",
            "# egress-enclave rules --remove undoes them:",
            .. rules.Reverse().Select(r => r.RemoveCommandLine),
        ];
        Assert.That(printed, Is.EqualTo(new CommandResult(0, expected, [])));
    }

    [Test]
    public void ApplyWithoutRootIsRefused()
    {
        var refused = Run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp", "dotnet", EnclaveDll, "rules", "--apply", "--config", _config]);

        Assert.That(refused, Is.EqualTo(new CommandResult(1, [], ["error: changing routes and iptables rules needs root (run as root, or with CAP_NET_ADMIN)"])));
    }

    private static RedirectRule Nft(RedirectRule rule) =>
        rule.Program is "iptables" or "ip6tables" ? rule with { Program = rule.Program + "-nft" } : rule;

    private static string Label(RedirectRule rule) => rule.Program == "ip" ? rule.Description : $"{rule.Description} ({rule.Program})";

    private string WriteConfig(string name, string text)
    {
        string path = Path.Combine(_directory, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static string[] Rules(string listing) =>
        [.. listing.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(line => line.StartsWith("-A ", StringComparison.Ordinal))];

    // Run in the test's own directory, which has no enclave.toml: a missing --config is not answered by a stray file.
    private CommandResult RunInNamespace(params string[] arguments) =>
        Run(["ip", "netns", "exec", _namespace!.Name, "dotnet", EnclaveDll, .. arguments], _directory);

    private static CommandResult Run(string[] command, string workingDirectory = "/tmp")
    {
        var start = new ProcessStartInfo(command[0]) { RedirectStandardError = true, RedirectStandardOutput = true, WorkingDirectory = workingDirectory };
        foreach (string argument in command[1..])
        {
            start.ArgumentList.Add(argument);
        }

        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        string stderr = process.StandardError.ReadToEnd();
        Assert.That(process.WaitForExit(TimeSpan.FromSeconds(60)), Is.True, "egress-enclave did not finish");
        return new CommandResult(process.ExitCode, Lines(stdout.GetAwaiter().GetResult()), Lines(stderr));
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    private sealed record CommandResult(int ExitCode, IReadOnlyList<string> Output, IReadOnlyList<string> Error)
    {
        public bool Equals(CommandResult? other) =>
            other is not null && ExitCode == other.ExitCode && Output.SequenceEqual(other.Output) && Error.SequenceEqual(other.Error);

        public override int GetHashCode() => ExitCode;

        public override string ToString() => $"exit {ExitCode}\nstdout:\n  {string.Join("\n  ", Output)}\nstderr:\n  {string.Join("\n  ", Error)}";
    }
}
