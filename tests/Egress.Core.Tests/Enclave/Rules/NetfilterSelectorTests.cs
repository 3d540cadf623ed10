using Egress.Configuration;
using Egress.Enclave.Rules;

namespace Egress.Tests.Enclave.Rules;

/// <summary>Which netfilter backend the rules go into, decided by probing a <see cref="FakeSystem"/>.</summary>
public sealed class NetfilterSelectorTests
{
    private static readonly NetfilterPrograms Nft = new(NetfilterBackend.Nft, "iptables-nft", "ip6tables-nft");
    private static readonly NetfilterPrograms Legacy = new(NetfilterBackend.Legacy, "iptables-legacy", "ip6tables-legacy");

    private FakeSystem _system = null!;

    [SetUp]
    public void CreateSystem() => _system = new FakeSystem();

    [Test]
    public void AutoTakesNfTablesAndLeavesLegacyTablesNobodyUsesAlone()
    {
        var selection = Select(NetfilterBackend.Auto);

        Assert.That(selection.Error, Is.Null);
        Assert.That(selection.Backends, Is.EqualTo(new[] { Nft }));
        Assert.That(selection.Explanation, Is.EqualTo("netfilter: nft (iptables-nft works; no legacy nat table is in use, so no rules are there)"));
        Assert.That(selection.Warning, Is.Null);
        Assert.That(_system.Calls, Is.EqualTo(new[] { "iptables-nft -w -t nat -S OUTPUT" }), "a real probe of nft, and none of legacy (it would create the legacy nat table)");
    }

    [Test]
    public void AutoPrefersNfTablesWhereBothWorkAndTheLegacyTablesHoldNoRules()
    {
        _system.LegacyNatInUse = true;

        var selection = Select(NetfilterBackend.Auto);

        Assert.That(selection.Backends, Is.EqualTo(new[] { Nft }));
        Assert.That(selection.Explanation, Is.EqualTo("netfilter: nft (both work; auto prefers nf_tables: iptables-nft works)"));
        Assert.That(_system.Calls, Does.Contain("iptables-legacy -w -t nat -S OUTPUT"));
    }

    [Test]
    public void AutoTakesLegacyWhereTheKernelHasNoNfTables()
    {
        _system.Broken[NetfilterBackend.Nft] = FakeSystem.NoNfTables;

        var selection = Select(NetfilterBackend.Auto);

        Assert.That(selection.Error, Is.Null);
        Assert.That(selection.Backends, Is.EqualTo(new[] { Legacy }));
        Assert.That(selection.Explanation, Is.EqualTo($"netfilter: legacy (iptables-nft failed: {FakeSystem.NoNfTables})"));
    }

    [Test]
    public void NftSayingItFailedCountsAsFailedWhateverItsExitCode()
    {
        _system.Broken[NetfilterBackend.Nft] = FakeSystem.NoNfTables;
        _system.FailuresExitZero = true;

        Assert.That(Select(NetfilterBackend.Auto).Backends, Is.EqualTo(new[] { Legacy }));
    }

    [Test]
    public void AutoTakesNftWhereLegacyFails()
    {
        _system.LegacyNatInUse = true;
        _system.Broken[NetfilterBackend.Legacy] = FakeSystem.NoLegacyNat;

        var selection = Select(NetfilterBackend.Auto);

        Assert.That(selection.Backends, Is.EqualTo(new[] { Nft }));
        Assert.That(selection.Explanation, Is.EqualTo($"netfilter: nft (iptables-nft works; legacy: iptables-legacy failed: {FakeSystem.NoLegacyNat})"));
    }

    [Test]
    public void AutoKeepsRulesThatAreAlreadyInTheLegacyTables()
    {
        _system.LegacyNatInUse = true;

        var selection = Select(NetfilterBackend.Auto, holdsRules: p => p.Backend == NetfilterBackend.Legacy);

        Assert.That(selection.Backends, Is.EqualTo(new[] { Legacy }));
        Assert.That(selection.Explanation, Does.StartWith("netfilter: legacy (both work, but the Egress rules are already in the iptables-legacy tables;"));
        Assert.That(selection.Warning, Is.Null);
    }

    [Test]
    public void AutoWarnsWhenRulesAreInBothTables()
    {
        _system.LegacyNatInUse = true;

        var selection = Select(NetfilterBackend.Auto, holdsRules: _ => true);

        Assert.That(selection.Backends, Is.EqualTo(new[] { Nft }));
        Assert.That(selection.Warning, Does.StartWith("warning: the Egress rules are in both the nf_tables and the iptables-legacy tables"));
    }

    [Test]
    public void RemovalUsesEveryBackendThatWorksAndMayHoldRules()
    {
        var unusedLegacy = Select(NetfilterBackend.Auto, NetfilterPurpose.Remove);
        _system.LegacyNatInUse = true;
        var both = Select(NetfilterBackend.Auto, NetfilterPurpose.Remove);
        _system.Broken[NetfilterBackend.Nft] = FakeSystem.NoNfTables;
        var legacyOnly = Select(NetfilterBackend.Auto, NetfilterPurpose.Remove);

        Assert.That(unusedLegacy.Backends, Is.EqualTo(new[] { Nft }));
        Assert.That(both.Backends, Is.EqualTo(new[] { Nft, Legacy }));
        Assert.That(both.Explanation, Is.EqualTo("netfilter: nft and legacy (both work; removing from both)"));
        Assert.That(legacyOnly.Backends, Is.EqualTo(new[] { Legacy }));
    }

    [Test]
    public void ExplicitLegacyNeitherProbesNorTouchesNft()
    {
        var selection = Select(NetfilterBackend.Legacy);

        Assert.That(selection.Backends, Is.EqualTo(new[] { Legacy }));
        Assert.That(selection.Explanation, Is.EqualTo("netfilter: legacy (set by --netfilter; iptables-legacy works)"));
        Assert.That(_system.Calls, Has.None.Contains("nft"));
    }

    // A new user's trial: printing with legacy named probed it, and the probe created the legacy nat table (after it,
    // auto found a legacy nat table in use and iptables-nft warned about it on every call).
    [Test]
    public void PrintingWithLegacyNamedRunsNoLegacyProbeWhereNoLegacyNatTableIsInUse()
    {
        var selection = Select(NetfilterBackend.Legacy, NetfilterPurpose.Print);

        Assert.That(selection.Error, Is.Null);
        Assert.That(selection.Backends, Is.EqualTo(new[] { Legacy }));
        Assert.That(selection.Explanation, Is.EqualTo("netfilter: legacy (set by --netfilter; not probed, that would create the legacy nat table)"));
        Assert.That(_system.Calls, Is.Empty, "nothing run: the programs are found on PATH");
        Assert.That(_system.LegacyNatInUse, Is.False);
    }

    [Test]
    public void PrintingWithLegacyNamedProbesItWhereALegacyNatTableIsInUse()
    {
        _system.LegacyNatInUse = true;

        var selection = Select(NetfilterBackend.Legacy, NetfilterPurpose.Print);

        Assert.That(selection.Explanation, Is.EqualTo("netfilter: legacy (set by --netfilter; iptables-legacy works)"));
        Assert.That(_system.Calls, Is.EqualTo(new[] { "iptables-legacy -w -t nat -S OUTPUT" }));
    }

    [Test]
    public void ApplyingWithLegacyNamedProbesItEvenWhereNoLegacyNatTableIsInUse()
    {
        var selection = Select(NetfilterBackend.Legacy, NetfilterPurpose.Apply);

        Assert.That(selection.Backends, Is.EqualTo(new[] { Legacy }));
        Assert.That(_system.Calls, Is.EqualTo(new[] { "iptables-legacy -w -t nat -S OUTPUT" }));
    }

    [Test]
    public void RemovingWithLegacyNamedWhereNoLegacyNatTableIsInUseFindsNoRulesThereWithoutProbing()
    {
        var selection = Select(NetfilterBackend.Legacy, NetfilterPurpose.Remove);

        Assert.That(selection.Error, Is.Null);
        Assert.That(selection.Backends, Is.Empty);
        Assert.That(selection.Explanation, Is.EqualTo("netfilter: legacy (set by --netfilter; no legacy nat table is in use, so no rules are there)"));
        Assert.That(_system.Calls, Is.Empty);
    }

    [Test]
    public void PrintingWithLegacyNamedWhereItsProgramsAreMissingIsStillAnError()
    {
        _system.Programs.ExceptWith(["iptables-legacy", "ip6tables-legacy"]);

        var selection = Select(NetfilterBackend.Legacy, NetfilterPurpose.Print);

        Assert.That(selection.Backends, Is.Empty);
        Assert.That(selection.Error, Does.StartWith("netfilter legacy (set by --netfilter) does not work here: no iptables-legacy, and iptables is the nft variant"));
        Assert.That(_system.Calls, Is.EqualTo(new[] { "iptables -V" }));
    }

    [Test]
    public void ExplicitNftOnAKernelWithoutNfTablesIsAnErrorThatSaysWhatToDo()
    {
        _system.Broken[NetfilterBackend.Nft] = FakeSystem.NoNfTables;

        var selection = Select(NetfilterBackend.Nft);

        Assert.That(selection.Backends, Is.Empty);
        Assert.That(selection.Error, Is.EqualTo(
            $"netfilter nft (set by --netfilter) does not work here: iptables-nft failed: {FakeSystem.NoNfTables}. "
            + "This kernel may lack nf_tables (the Nitro enclave kernel does): set [enclave] netfilter = \"legacy\" or \"auto\", or pass --netfilter legacy."));
    }

    [Test]
    public void NoWorkingBackendIsAnErrorNamingBothFailures()
    {
        _system.Broken[NetfilterBackend.Nft] = FakeSystem.NoNfTables;
        _system.Broken[NetfilterBackend.Legacy] = FakeSystem.NoLegacyNat;

        var selection = Select(NetfilterBackend.Auto);

        Assert.That(selection.Backends, Is.Empty);
        Assert.That(selection.Error, Does.StartWith($"no netfilter backend works here: iptables-nft failed: {FakeSystem.NoNfTables}; iptables-legacy failed: {FakeSystem.NoLegacyNat}."));
    }

    [Test]
    public void WithoutIptablesTheErrorSaysWhatToInstall()
    {
        _system.Programs.Clear();
        _system.Programs.Add("ip");

        var selection = Select(NetfilterBackend.Auto);

        Assert.That(selection.Error, Does.Contain("neither iptables-nft nor iptables found (Debian/Ubuntu: apt-get install iptables"));
        Assert.That(selection.Error, Does.Contain("neither iptables-legacy nor iptables found"));
    }

    [Test]
    public void PlainLegacyIptablesStandsInWhereTheSuffixedNamesAreMissing()
    {
        _system.Programs.ExceptWith(["iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy"]);
        _system.PlainVersion = "iptables v1.8.4 (legacy)";

        var selection = Select(NetfilterBackend.Auto);

        Assert.That(selection.Backends, Is.EqualTo(new[] { new NetfilterPrograms(NetfilterBackend.Legacy, "iptables", "ip6tables") }));
        Assert.That(selection.Explanation, Is.EqualTo("netfilter: legacy (no iptables-nft, and iptables is the legacy variant (iptables v1.8.4 (legacy)))"));
    }

    [Test]
    public void PlainNfTablesIptablesStandsInForNft()
    {
        _system.Programs.ExceptWith(["iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy"]);

        var selection = Select(NetfilterBackend.Auto);

        Assert.That(selection.Backends, Is.EqualTo(new[] { new NetfilterPrograms(NetfilterBackend.Nft, "iptables", "ip6tables") }));
        Assert.That(selection.Explanation, Is.EqualTo("netfilter: nft (iptables works; no legacy nat table is in use, so no rules are there)"));
    }

    [Test]
    public void IptablesOlderThanTheNftVariantIsLegacy()
    {
        _system.Programs.ExceptWith(["iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy"]);
        _system.PlainVersion = "iptables v1.6.1";

        Assert.That(Select(NetfilterBackend.Nft).Error, Does.Contain("no iptables-nft, and iptables is the legacy variant (iptables v1.6.1)"));
        Assert.That(Select(NetfilterBackend.Legacy).Backends, Is.EqualTo(new[] { new NetfilterPrograms(NetfilterBackend.Legacy, "iptables", "ip6tables") }));
    }

    [TestCase("auto", NetfilterBackend.Auto)]
    [TestCase("nft", NetfilterBackend.Nft)]
    [TestCase("legacy", NetfilterBackend.Legacy)]
    public void BackendNamesParse(string text, NetfilterBackend expected)
    {
        Assert.That(ConfigurationChoices.Netfilter.TryRead(text, out NetfilterBackend backend), Is.True);
        Assert.That(backend, Is.EqualTo(expected));
        Assert.That(ConfigurationChoices.Netfilter.TextOf(backend), Is.EqualTo(text));
    }

    [TestCase("nftables")]
    [TestCase("Legacy")]
    [TestCase("")]
    public void OtherBackendNamesDoNotParse(string text) =>
        Assert.That(ConfigurationChoices.Netfilter.TryRead(text, out NetfilterBackend _), Is.False);

    [Test]
    public void AdaptReplacesOnlyTheIptablesPrograms()
    {
        var rules = RedirectRules.For().Select(Legacy.Adapt).Select(r => r.Program);

        Assert.That(rules, Is.EqualTo(new[] { "ip", "ip", "ip", "ip", "iptables-legacy", "iptables-legacy", "iptables-legacy", "iptables-legacy", "iptables-legacy", "ip6tables-legacy", "ip6tables-legacy", "ip6tables-legacy", "ip6tables-legacy", "ip6tables-legacy", "ip6tables-legacy" }));
    }

    // A field trial: rules --apply --netfilter nft beside rules already in the legacy tables added a second set without
    // a word, and rules --remove --netfilter nft left the legacy set in place (exit 0).
    [TestCase(false, "warning: the Egress rules are also in the iptables-legacy tables, and apply there too: rules --remove --netfilter legacy removes them")]
    [TestCase(true, "warning: the Egress rules are also in the iptables-legacy tables, and still apply there: rules --remove --netfilter legacy removes them (rules --remove with auto removes from both)")]
    public void AnExplicitBackendWarnsOfEgressRulesInTheOther(bool remove, string warning)
    {
        _system.LegacyNatInUse = true;

        var selection = Select(NetfilterBackend.Nft, remove ? NetfilterPurpose.Remove : NetfilterPurpose.Apply, holdsRules: p => p.Backend == NetfilterBackend.Legacy);

        Assert.That(selection.Backends, Is.EqualTo(new[] { Nft }));
        Assert.That(selection.Warning, Is.EqualTo(warning));
    }

    [Test]
    public void AnExplicitNftBackendDoesNotProbeLegacyTablesNobodyUses()
    {
        var selection = Select(NetfilterBackend.Nft, holdsRules: _ => true);

        Assert.That(selection.Warning, Is.Null);
        Assert.That(_system.Calls, Has.None.Contains("iptables-legacy"), "a probe would create the legacy nat table");
    }

    private NetfilterSelection Select(NetfilterBackend setting, NetfilterPurpose purpose = NetfilterPurpose.Apply, Func<NetfilterPrograms, bool>? holdsRules = null) =>
        new NetfilterSelector(_system, () => _system.LegacyNatInUse).Select(setting, "set by --netfilter", purpose, holdsRules ?? (_ => false));
}
