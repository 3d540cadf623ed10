using Egress.Interception;

namespace Egress.Enclave.Rules;

/// <summary>
/// <c>egress-enclave rules [--apply | --remove]</c>: prints, applies (idempotently) or removes the redirect rules
/// from <see cref="RedirectRules"/>. Applying is all or nothing: if a step fails, the steps this run added are
/// undone before it reports the failure.
/// </summary>
internal sealed class RulesCommand(TextWriter output, TextWriter error)
{
    private static readonly string[] Programs = ["ip", "iptables", "ip6tables"];
    private static readonly string[] LoopbackShowUp = ["link", "show", "dev", "lo", "up"];
    private static readonly string[] LoopbackUp = ["link", "set", "dev", "lo", "up"];

    public int Print(int proxyPort)
    {
        output.WriteLine("# Egress redirect rules (egress-enclave rules --apply runs these idempotently)");
        output.WriteLine("# bring loopback up if it is down (an enclave may boot with lo down; --remove leaves it up)");
        output.WriteLine(string.Join(' ', ["ip", .. LoopbackUp]));
        foreach (var rule in RedirectRules.For(proxyPort))
        {
            output.WriteLine($"# {rule.Description}");
            output.WriteLine(rule.AddCommandLine);
        }

        output.WriteLine("# egress-enclave rules --remove undoes them:");
        foreach (var rule in RedirectRules.For(proxyPort).Reverse())
        {
            output.WriteLine(rule.RemoveCommandLine);
        }

        return 0;
    }

    public int Apply(int proxyPort, bool force)
    {
        if (!CanChangeRules(requireEnclaveShape: !force))
        {
            return 1;
        }

        if (!EnsureLoopbackUp())
        {
            return 1;
        }

        var ipv6 = IPv6Enabled();
        var added = new List<RedirectRule>();
        foreach (var rule in RedirectRules.For(proxyPort))
        {
            if (rule.IsIPv6 && !ipv6)
            {
                output.WriteLine($"skipped: {rule.Description} (IPv6 is disabled here)");
                continue;
            }

            if (IsInPlace(rule))
            {
                output.WriteLine($"present: {rule.Description}");
                continue;
            }

            var result = ProcessRunner.Run(rule.Program, rule.Add);
            if (result.ExitCode != 0)
            {
                error.WriteLine($"error: '{rule.AddCommandLine}' failed (exit {result.ExitCode}): {result.StandardError.Trim()}");
                foreach (var undo in Enumerable.Reverse(added))
                {
                    var undone = ProcessRunner.Run(undo.Program, undo.Remove);
                    error.WriteLine(undone.ExitCode == 0
                        ? $"rolled back: {undo.Description}"
                        : $"error: could not roll back '{undo.RemoveCommandLine}': {undone.StandardError.Trim()}");
                }

                return 1;
            }

            added.Add(rule);
            output.WriteLine($"added: {rule.Description}: {rule.AddCommandLine}");
        }

        return 0;
    }

    public int Remove(int proxyPort)
    {
        if (!CanChangeRules(requireEnclaveShape: false))
        {
            return 1;
        }

        var ipv6 = IPv6Enabled();
        var failed = false;
        foreach (var rule in RedirectRules.For(proxyPort).Reverse())
        {
            if (rule.IsIPv6 && !ipv6)
            {
                continue;
            }

            // iptables allows duplicates: remove every copy, never more than a bounded number.
            var removed = 0;
            while (removed < 64 && IsInPlace(rule))
            {
                var result = ProcessRunner.Run(rule.Program, rule.Remove);
                if (result.ExitCode != 0)
                {
                    error.WriteLine($"error: '{rule.RemoveCommandLine}' failed (exit {result.ExitCode}): {result.StandardError.Trim()}");
                    failed = true;
                    break;
                }

                removed++;
            }

            output.WriteLine(removed > 0 ? $"removed: {rule.Description}" : $"absent: {rule.Description}");
        }

        return failed ? 1 : 0;
    }

    /// <summary>
    /// The routes via lo cannot be added while lo is down ("Nexthop has invalid gateway"), and an enclave may boot
    /// with it down: bring it up first. Removing the rules leaves it up (other loopback users need it).
    /// </summary>
    private bool EnsureLoopbackUp()
    {
        if (ProcessRunner.Run("ip", LoopbackShowUp).StandardOutput.Trim().Length > 0)
        {
            output.WriteLine("present: loopback interface up");
            return true;
        }

        var result = ProcessRunner.Run("ip", LoopbackUp);
        if (result.ExitCode != 0)
        {
            error.WriteLine($"error: 'ip {string.Join(' ', LoopbackUp)}' failed (exit {result.ExitCode}): {result.StandardError.Trim()}");
            return false;
        }

        output.WriteLine($"added: loopback interface up: ip {string.Join(' ', LoopbackUp)}");
        return true;
    }

    private static bool IsInPlace(RedirectRule rule)
    {
        var check = ProcessRunner.Run(rule.Program, rule.Check);
        return rule.CheckPrintsMatch
            ? check.ExitCode == 0 && check.StandardOutput.Trim().Length > 0
            : check.ExitCode == 0;
    }

    private bool CanChangeRules(bool requireEnclaveShape)
    {
        if (!Environment.IsPrivilegedProcess)
        {
            error.WriteLine("error: changing routes and iptables rules needs root (run as root, or with CAP_NET_ADMIN)");
            return false;
        }

        var missing = Programs.Where(p => ProcessRunner.FindOnPath(p) is null).ToList();
        if (missing.Count > 0)
        {
            error.WriteLine($"error: {string.Join(", ", missing)} not found on PATH (Debian/Ubuntu: apt-get install iproute2 iptables; Amazon Linux: yum install iproute iptables)");
            return false;
        }

        if (requireEnclaveShape)
        {
            // An enclave has only the loopback interface. Routing everything via lo on a machine with real
            // interfaces would cut it off the network: refuse unless told otherwise.
            var others = Directory.Exists("/sys/class/net")
                ? Directory.GetDirectories("/sys/class/net").Select(Path.GetFileName).Where(n => n != "lo").ToList()
                : [];
            if (others.Count > 0)
            {
                error.WriteLine($"error: this network namespace has interfaces other than lo ({string.Join(", ", others)}); an enclave has none. Routing all traffic via lo here would cut this machine off. Use --force if you really mean it.");
                return false;
            }
        }

        return true;
    }

    private static bool IPv6Enabled()
    {
        try
        {
            return File.Exists("/proc/net/if_inet6")
                && File.ReadAllText("/proc/sys/net/ipv6/conf/all/disable_ipv6").Trim() == "0";
        }
        catch (IOException)
        {
            return false;
        }
    }
}
