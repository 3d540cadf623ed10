using System.Diagnostics;
using Egress.Interception;
using Egress.Tests.Interception;

namespace Egress.Tests.Enclave.Rules;

/// <summary>
/// <c>egress-enclave rules</c> as a user runs it: the built egress-enclave.dll under <c>ip netns exec</c> in a fresh
/// namespace (apply, idempotence, remove, the refusal where other interfaces exist), and printing without root.
/// </summary>
[NonParallelizable]
public sealed class RulesCommandTests
{
    private static readonly string[] Descriptions = [.. RedirectRules.For().Select(r => r.Description)];

    private NetworkNamespace? _namespace;

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
    }

    [TearDown]
    public void DeleteNamespace() => _namespace?.Dispose();

    [Test]
    public void ApplyAddsExactlyTheRulesThenIsIdempotentAndRemoveLeavesNone()
    {
        var first = RunInNamespace("rules", "--apply");
        var second = RunInNamespace("rules", "--apply");
        string natV4 = _namespace!.Run("iptables", "-t", "nat", "-S");
        string natV6 = _namespace.Run("ip6tables", "-t", "nat", "-S");
        string routesV4 = _namespace.Run("ip", "route", "show");
        string routesV6Default = _namespace.Run("ip", "-6", "route", "show", "default");

        Assert.That(first, Is.EqualTo(new CommandResult(0,
            ["added: loopback interface up: ip link set dev lo up", .. RedirectRules.For().Select(r => $"added: {r.Description}: {r.AddCommandLine}")], [])));
        Assert.That(second, Is.EqualTo(new CommandResult(0, ["present: loopback interface up", .. Descriptions.Select(d => $"present: {d}")], [])));
        Assert.That(Rules(natV4), Is.EqualTo(new[]
        {
            "-A OUTPUT ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 127.0.0.1:4444",
            "-A POSTROUTING -s 0.0.0.0/32 -o lo -j SNAT --to-source 127.0.0.1",
        }));
        Assert.That(Rules(natV6), Is.EqualTo(new[]
        {
            "-A OUTPUT ! -d ::1/128 -p tcp -j DNAT --to-destination [::1]:4444",
            "-A POSTROUTING -s ::/128 -o lo -j SNAT --to-source ::1",
        }));
        Assert.That(routesV4.Trim(), Is.EqualTo("default via 127.0.0.1 dev lo"));
        Assert.That(routesV6Default, Does.StartWith("default dev lo "));

        var removed = RunInNamespace("rules", "--remove");
        var again = RunInNamespace("rules", "--remove");

        Assert.That(removed, Is.EqualTo(new CommandResult(0, [.. Descriptions.Reverse().Select(d => $"removed: {d}")], [])));
        Assert.That(again, Is.EqualTo(new CommandResult(0, [.. Descriptions.Reverse().Select(d => $"absent: {d}")], [])));
        Assert.That(Rules(_namespace.Run("iptables", "-t", "nat", "-S")), Is.Empty);
        Assert.That(Rules(_namespace.Run("ip6tables", "-t", "nat", "-S")), Is.Empty);
        Assert.That(_namespace.Run("ip", "route", "show").Trim(), Is.Empty);
        Assert.That(_namespace.Run("ip", "-6", "route", "show", "default").Trim(), Is.Empty);
    }

    [Test]
    public void CustomProxyPortIsTheDnatTarget()
    {
        var applied = RunInNamespace("rules", "--apply", "--proxy-port", "8080");

        Assert.That(applied.ExitCode, Is.Zero, string.Join('\n', applied.Error));
        Assert.That(Rules(_namespace!.Run("iptables", "-t", "nat", "-S"))[0], Is.EqualTo("-A OUTPUT ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 127.0.0.1:8080"));
        Assert.That(Rules(_namespace.Run("ip6tables", "-t", "nat", "-S"))[0], Is.EqualTo("-A OUTPUT ! -d ::1/128 -p tcp -j DNAT --to-destination [::1]:8080"));
    }

    [Test]
    public void ApplyRefusesWhereOtherInterfacesExistUnlessForced()
    {
        _namespace!.Run("ip", "link", "add", "egt0", "type", "veth", "peer", "name", "egt1");

        var refused = RunInNamespace("rules", "--apply");
        string natAfterRefusal = _namespace.Run("iptables", "-t", "nat", "-S");
        var forced = RunInNamespace("rules", "--apply", "--force");

        Assert.That(refused.ExitCode, Is.EqualTo(1));
        Assert.That(refused.Output, Is.Empty);
        Assert.That(refused.Error, Has.Count.EqualTo(1));
        Assert.That(refused.Error[0], Does.StartWith("error: this network namespace has interfaces other than lo (").And.Contain("egt0").And.Contain("egt1").And.EndWith("Use --force if you really mean it."));
        Assert.That(Rules(natAfterRefusal), Is.Empty, "nothing applied");
        Assert.That(forced.ExitCode, Is.Zero, string.Join('\n', forced.Error));
        Assert.That(Rules(_namespace.Run("iptables", "-t", "nat", "-S")), Has.Length.EqualTo(2));
    }

    [Test]
    public void PrintNeedsNoRootAndShowsAddThenRemoveLines()
    {
        var printed = Run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp", "dotnet", EnclaveDll, "rules", "--proxy-port", "8080"]);

        var rules = RedirectRules.For(8080);
        string[] expected =
        [
            "# Egress redirect rules (egress-enclave rules --apply runs these idempotently)",
            "# bring loopback up if it is down (an enclave may boot with lo down; --remove leaves it up)",
            "ip link set dev lo up",
            .. rules.SelectMany(r => new[] { $"# {r.Description}", r.AddCommandLine }),
            "# egress-enclave rules --remove undoes them:",
            .. rules.Reverse().Select(r => r.RemoveCommandLine),
        ];
        Assert.That(printed, Is.EqualTo(new CommandResult(0, expected, [])));
    }

    [Test]
    public void ApplyWithoutRootIsRefused()
    {
        var refused = Run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp", "dotnet", EnclaveDll, "rules", "--apply"]);

        Assert.That(refused, Is.EqualTo(new CommandResult(1, [], ["error: changing routes and iptables rules needs root (run as root, or with CAP_NET_ADMIN)"])));
    }

    private static string[] Rules(string listing) =>
        [.. listing.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(line => line.StartsWith("-A ", StringComparison.Ordinal))];

    private CommandResult RunInNamespace(params string[] arguments) =>
        Run(["ip", "netns", "exec", _namespace!.Name, "dotnet", EnclaveDll, .. arguments]);

    private static CommandResult Run(string[] command)
    {
        var start = new ProcessStartInfo(command[0]) { RedirectStandardError = true, RedirectStandardOutput = true, WorkingDirectory = "/tmp" };
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
