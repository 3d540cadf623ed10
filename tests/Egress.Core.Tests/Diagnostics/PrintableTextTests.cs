using Egress.Configuration;
using Egress.Diagnostics;

namespace Egress.Tests.Diagnostics;

/// <summary><see cref="PrintableText"/>, and the configuration errors that quote a file's text through it.</summary>
public sealed class PrintableTextTests
{
    [TestCase("api.example.com", "api.example.com")]
    [TestCase("a\nb", "a\\nb")]
    [TestCase("a\r\tb", "a\\r\\tb")]
    [TestCase("a\u001b[31mb", "a\\u001B[31mb", TestName = "ESC sequence")] // named: a case whose name holds an ESC is never run
    [TestCase("\u007f\u0085\u009b", "\\u007F\\u0085\\u009B", TestName = "DEL and C1 controls")]
    [TestCase("abc\u202edef", "abc\\u202Edef")] // RIGHT-TO-LEFT OVERRIDE (Trojan Source)
    [TestCase("x\u200by", "x\\u200By")] // ZERO WIDTH SPACE
    [TestCase("bücher.example", "bücher.example")]
    [TestCase("", "")]
    public void ControlAndFormatCharactersAreEscapedAndTheRestKept(string text, string expected) =>
        Assert.That(PrintableText.Escape(text), Is.EqualTo(expected));

    [Test]
    public void DestinationRuleParseEscapesTheEntryInItsMessage() =>
        Assert.That(() => Egress.Policy.DestinationRule.Parse("a\u001b[31mb"),
            Throws.ArgumentException.With.Message.StartsWith("invalid destination \"a\\u001B[31mb\": contains invalid character '\\u001B'"));

    [Test]
    public void TextWithNothingToEscapeIsReturnedAsIs()
    {
        string text = "api.example.com:443";

        Assert.That(PrintableText.Escape(text), Is.SameAs(text));
    }

    /// <summary>An operator's trial: a destination with an escape sequence or a newline in it was quoted raw in the
    /// error, which split the line and coloured the terminal.</summary>
    [TestCase("a\\u001b[31mb", "a\\u001B[31mb")]
    [TestCase("c\\nd", "c\\nd")]
    public void ADestinationsControlCharactersAreEscapedInItsError(string written, string shown)
    {
        EgressConfiguration configuration = EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\"{written}\"]\n", "enclave.toml");
        var error = Assert.Throws<ConfigurationException>(() => configuration.CreatePolicy(configuration.CreateCache()))!;

        Assert.Multiple(() =>
        {
            Assert.That(error.Message, Does.Contain($"invalid destination \"{shown}\""));
            Assert.That(error.Message.Any(char.IsControl), Is.False, error.Message);
            Assert.That(error.Problem.Any(char.IsControl), Is.False, error.Problem);
        });
    }

    [TestCase("short", "short")]
    [TestCase("a\nb", "a\\nb")]
    public void ShortTextIsOnlyEscaped(string text, string expected) =>
        Assert.That(PrintableText.Shorten(text), Is.EqualTo(expected));

    [Test]
    public void LongTextKeepsItsStartAndItsLength()
    {
        string text = new('k', 1 << 20);

        Assert.That(PrintableText.Shorten(text), Is.EqualTo(new string('k', 256) + "… (1048576 characters)"));
    }

    [Test]
    public void ASurrogatePairIsNeverCut()
    {
        string text = new string('a', 255) + "😀" + new string('b', 100);

        string shortened = PrintableText.Shorten(text);

        Assert.That(shortened, Is.EqualTo(new string('a', 255) + "… (357 characters)"));
    }

    /// <summary>A review: "…aaaa\u… (355 characters)", an escape cut in half.</summary>
    [TestCase(250, "\\u001B")] // the escape ends at the cut: kept whole
    [TestCase(251, "")]
    [TestCase(254, "")]
    [TestCase(255, "")]
    public void AnEscapeIsNeverCut(int before, string kept)
    {
        string text = new string('a', before) + "\u001b" + new string('b', 100);

        string shortened = PrintableText.Shorten(text);

        Assert.That(shortened, Is.EqualTo(new string('a', before) + kept + (kept.Length == 0 ? "" : new string('b', 256 - before - kept.Length)) + $"… ({text.Length} characters)"));
    }

    /// <summary>A new user's trial: an unknown key of a megabyte was echoed whole in the one-line error, and a quoted
    /// key's control characters reached the terminal raw.</summary>
    [Test]
    public void AnUnknownKeyIsShortenedAndEscapedInTheMessage()
    {
        string written = "x\\u001b" + new string('k', 1 << 20); // the TOML escape of ESC in a quoted key
        var error = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse($"\"{written}\" = 1\n", "enclave.toml"))!;

        Assert.Multiple(() =>
        {
            Assert.That(error.Message, Is.EqualTo("enclave.toml:1:1: error: unknown key (key 'x\\u001B" + new string('k', 249) + "… (1048578 characters)')"));
            Assert.That(error.Key, Is.EqualTo("x\u001b" + new string('k', 1 << 20)), "the key itself is kept whole");
        });
    }

    [Test]
    public void AValueQuotedInAnErrorIsShortened()
    {
        string value = new('m', 100_000);
        var error = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse($"[egress]\nmode = \"{value}\"\n", "enclave.toml"))!;

        Assert.That(error.Problem, Does.EndWith("found \"" + new string('m', 256) + "… (100000 characters)\""));
    }

    [Test]
    public void ADestinationQuotedInItsErrorIsShortened()
    {
        string entry = "a b" + new string('d', 100_000);
        EgressConfiguration configuration = EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\"{entry}\"]\n", "enclave.toml");
        var error = Assert.Throws<ConfigurationException>(() => configuration.CreatePolicy(configuration.CreateCache()))!;

        Assert.That(error.Problem, Does.StartWith("invalid destination \"a b" + new string('d', 253) + "… (100003 characters)\": "));
    }
}
