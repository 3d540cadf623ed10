using Egress.Configuration;

namespace Egress.Tests.Configuration;

public sealed class ConfigurationChoicesTests
{
    private static IEnumerable<ConfigurationKey> ChoiceKeys() =>
        ConfigurationKeys.All.Where(key => key.Kind == ConfigurationValueKind.Choice);

    [Test]
    public void EveryChoiceKeyHasItsChoicesAndItsDefaultIsOneOfThem()
    {
        var keys = ChoiceKeys().ToList();

        Assert.That(keys.Select(key => key.Path), Is.EquivalentTo(new[] { "egress.mode", "egress.tls_server_name", "enclave.netfilter", "enclave.report_denials" }));
        Assert.Multiple(() =>
        {
            foreach (var key in keys)
            {
                Assert.That(key.Choices, Is.Not.Null, key.Path);
                string text = key.Choices!.TextOf((Enum)key.Default!);
                Assert.That(key.Choices.TryRead(text, out Enum? value) && value.Equals(key.Default), Is.True, key.Path);
                Assert.That(key.DocumentedDefault, Is.EqualTo($"`\"{text}\"`"), key.Path);
            }
        });
    }

    [TestCase("egress.mode", "enforce", Egress.Policy.EgressMode.Enforce)]
    [TestCase("egress.mode", "report", Egress.Policy.EgressMode.Report)]
    [TestCase("egress.tls_server_name", "require", Egress.Tls.TlsServerNameMode.Require)]
    [TestCase("egress.tls_server_name", "if-present", Egress.Tls.TlsServerNameMode.IfPresent)]
    [TestCase("egress.tls_server_name", "off", Egress.Tls.TlsServerNameMode.Off)]
    [TestCase("enclave.netfilter", "auto", NetfilterBackend.Auto)]
    [TestCase("enclave.netfilter", "nft", NetfilterBackend.Nft)]
    [TestCase("enclave.netfilter", "legacy", NetfilterBackend.Legacy)]
    [TestCase("enclave.report_denials", "destinations", Egress.Denials.DenialDetail.Destinations)]
    [TestCase("enclave.report_denials", "counts", Egress.Denials.DenialDetail.Counts)]
    [TestCase("enclave.report_denials", "off", Egress.Denials.DenialDetail.Off)]
    public void EachSpellingReadsAsItsValueAndPrintsBack(string path, string text, object expected)
    {
        var choices = ChoiceKeys().Single(key => key.Path == path).Choices!;

        Assert.That(choices.TryRead(text, out Enum? value), Is.True);
        Assert.That(value, Is.EqualTo(expected));
        Assert.That(choices.TextOf((Enum)expected), Is.EqualTo(text));
    }

    [TestCase("Report")]
    [TestCase("REPORT")]
    [TestCase(" report")]
    [TestCase("report ")]
    [TestCase("")]
    [TestCase("audit")]
    public void OnlyTheExactSpellingReads(string text)
    {
        Assert.That(ConfigurationChoices.Mode.TryRead(text, out Egress.Policy.EgressMode read), Is.False);
        Assert.That(read, Is.EqualTo(default(Egress.Policy.EgressMode)));
    }

    [Test]
    public void AValueOfAnotherKeyHasNoSpelling() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => ConfigurationChoices.Mode.TextOf(Egress.Tls.TlsServerNameMode.Off));

    [Test]
    public void AValueOutsideTheEnumHasNoSpelling() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => ConfigurationChoices.ReportDenials.TextOf((Egress.Denials.DenialDetail)42));

    [Test]
    public void TheErrorListsEverySpellingWithItsMeaningInOrder() =>
        Assert.That(ConfigurationChoices.ReportDenials.Expected, Is.EqualTo(
            "expected \"destinations\" (the enclave tells the parent what it denied: addresses, DNS names, server names, with counts), \"counts\" (counts by kind and reason, no address or name) or \"off\""));

    [Test]
    public void AReportDenialsValueOutsideTheChoicesIsAnErrorAtItsLocation()
    {
        var error = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse("[enclave]\nreport_denials = \"all\"\n", "enclave.toml"));

        Assert.That(error!.Message, Does.StartWith("enclave.toml:2:18: error: expected \"destinations\"").And.EndWith("found \"all\" (key 'enclave.report_denials')"));
    }
}
