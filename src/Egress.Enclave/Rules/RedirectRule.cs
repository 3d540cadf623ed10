namespace Egress.Enclave.Rules;

/// <summary>
/// One idempotent step of the enclave's redirect setup: a command that checks whether the step is in place,
/// one that adds it and one that removes it. Each is an argument vector for the named program.
/// </summary>
/// <param name="Description">What the step does, for people.</param>
/// <param name="Program">The program to run (<c>ip</c>, <c>iptables</c> or <c>ip6tables</c>).</param>
/// <param name="Check">Arguments that exit 0 when the step is already in place.</param>
/// <param name="Add">Arguments that put the step in place.</param>
/// <param name="Remove">Arguments that undo the step.</param>
/// <param name="IsIPv6">Whether the step belongs to the IPv6 stack (skipped where IPv6 is disabled).</param>
/// <param name="CheckPrintsMatch">
/// True when <paramref name="Check"/> always exits 0 and reports a match by printing it (<c>ip route show</c>);
/// false when its exit code is the answer (<c>iptables -C</c>).
/// </param>
internal sealed record RedirectRule(
    string Description,
    string Program,
    IReadOnlyList<string> Check,
    IReadOnlyList<string> Add,
    IReadOnlyList<string> Remove,
    bool IsIPv6,
    bool CheckPrintsMatch)
{
    /// <summary>The command line that adds this step, as a shell would show it.</summary>
    public string AddCommandLine => Program + " " + string.Join(' ', Add);

    /// <summary>The command line that removes this step, as a shell would show it.</summary>
    public string RemoveCommandLine => Program + " " + string.Join(' ', Remove);
}
