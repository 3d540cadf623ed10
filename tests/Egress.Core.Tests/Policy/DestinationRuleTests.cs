using System.Net;
using Egress.Policy;

namespace Egress.Tests.Policy;

public sealed class DestinationRuleTests
{
    [TestCase("api.example.com", DestinationRuleKind.ExactHost, "api.example.com", "api.example.com")]
    [TestCase("API.Example.COM", DestinationRuleKind.ExactHost, "api.example.com", "api.example.com")]
    [TestCase("api.example.com.", DestinationRuleKind.ExactHost, "api.example.com", "api.example.com")]
    [TestCase("localhost", DestinationRuleKind.ExactHost, "localhost", "localhost")]
    [TestCase("_dmarc.example.com", DestinationRuleKind.ExactHost, "_dmarc.example.com", "_dmarc.example.com")]
    [TestCase("xn--bcher-kva.example", DestinationRuleKind.ExactHost, "xn--bcher-kva.example", "xn--bcher-kva.example")]
    [TestCase("1password.com", DestinationRuleKind.ExactHost, "1password.com", "1password.com")]
    [TestCase("*.example.com", DestinationRuleKind.WildcardSubdomain, "*.example.com", "example.com")]
    [TestCase("*.EXAMPLE.com.", DestinationRuleKind.WildcardSubdomain, "*.example.com", "example.com")]
    [TestCase("*.com", DestinationRuleKind.WildcardSubdomain, "*.com", "com")]
    [TestCase("*", DestinationRuleKind.AllowAll, "*", null)]
    public void ParsesNames(string entry, DestinationRuleKind kind, string text, string? hostName)
    {
        DestinationRule rule = DestinationRule.Parse(entry);

        Assert.Multiple(() =>
        {
            Assert.That(rule.Kind, Is.EqualTo(kind));
            Assert.That(rule.Text, Is.EqualTo(text));
            Assert.That(rule.ToString(), Is.EqualTo(text));
            Assert.That(rule.HostName, Is.EqualTo(hostName));
            Assert.That(rule.Address, Is.Null);
            Assert.That(rule.Network, Is.Null);
        });
    }

    [TestCase("198.18.0.10", "198.18.0.10")]
    [TestCase("0.0.0.0", "0.0.0.0")]
    [TestCase("255.255.255.255", "255.255.255.255")]
    [TestCase("2001:db8::1", "2001:db8::1")]
    [TestCase("[2001:db8::1]", "2001:db8::1")]
    [TestCase("2001:DB8:0:0::1", "2001:db8::1")]
    [TestCase("::1", "::1")]
    [TestCase("::ffff:10.0.0.1", "::ffff:10.0.0.1")]
    public void ParsesAddresses(string entry, string text)
    {
        DestinationRule rule = DestinationRule.Parse(entry);

        Assert.Multiple(() =>
        {
            Assert.That(rule.Kind, Is.EqualTo(DestinationRuleKind.Address));
            Assert.That(rule.Text, Is.EqualTo(text));
            Assert.That(rule.Address, Is.EqualTo(IPAddress.Parse(text)));
            Assert.That(rule.HostName, Is.Null);
            Assert.That(rule.Network, Is.Null);
        });
    }

    [TestCase("198.18.0.0/15", "198.18.0.0/15")]
    [TestCase("10.0.0.5/32", "10.0.0.5/32")]
    [TestCase("128.0.0.0/1", "128.0.0.0/1")]
    [TestCase("2001:db8::/32", "2001:db8::/32")]
    [TestCase("2001:DB8::/32", "2001:db8::/32")]
    [TestCase("fd00::1/128", "fd00::1/128")]
    public void ParsesNetworks(string entry, string text)
    {
        DestinationRule rule = DestinationRule.Parse(entry);

        Assert.Multiple(() =>
        {
            Assert.That(rule.Kind, Is.EqualTo(DestinationRuleKind.Network));
            Assert.That(rule.Text, Is.EqualTo(text));
            Assert.That(rule.Network, Is.EqualTo(IPNetwork.Parse(text)));
            Assert.That(rule.Address, Is.Null);
        });
    }

    [TestCase("", "entry is empty")]
    [TestCase(".", "names no host")]
    [TestCase("*.", "names no domain after \"*.\" (write \"*.example.com\" for a domain's subdomains, or \"*\" for every destination)")]
    // A new user's trial: these were "not a valid IPv4 address" and "not a valid IPv6 address".
    [TestCase("example.com/", "'/' is only for a network (ADDRESS/LENGTH), and \"example.com\" is not an IP address; a host takes no path")]
    [TestCase("api.stripe.com:443/", "'/' is only for a network (ADDRESS/LENGTH), and \"api.stripe.com:443\" is not an IP address; a host takes no path")]
    [TestCase("1.2.3.4:443:80", "has more than one ':' after \"1.2.3.4\"; list its ports after one ':' (\"1.2.3.4:443,80\")")]
    [TestCase("api.example.com:443:80", "has more than one ':' after \"api.example.com\"; list its ports after one ':' (\"api.example.com:443,80\")")]
    [TestCase("*.:443", "names no domain after \"*.\" (write \"*.example.com\" for a domain's subdomains, or \"*\" for every destination)")]
    [TestCase(" api.example.com", "contains whitespace; write \"api.example.com\"")]
    [TestCase("api.example.com:443, 8443", "contains whitespace; write \"api.example.com:443,8443\"")] // a new user's trial
    [TestCase("api.example.com : 4x3", "contains whitespace")]
    [TestCase("2001:db8::1 :443", "contains whitespace")] // a review: joined, it is another address on every port
    [TestCase("api.example.com :443", "contains whitespace")]
    [TestCase("api.example.com ", "contains whitespace; write \"api.example.com\"")]
    [TestCase("api example.com", "contains whitespace")]
    [TestCase("api.example.com\t", "contains whitespace; write \"api.example.com\"")]
    [TestCase("https://api.example.com", "URLs are not supported; give the host only")]
    [TestCase("api.example.com:", "names no port after ':'")]
    [TestCase("api.example.com:0", "port \"0\" is not a number from 1 to 65535")]
    [TestCase("api.example.com:65536", "port \"65536\" is not a number from 1 to 65535")]
    [TestCase("api.example.com:0443", "port \"0443\" is not a number from 1 to 65535")]
    [TestCase("api.example.com:https", "port \"https\" is not a number from 1 to 65535")]
    [TestCase("api.example.com:443,", "port \"\" is not a number from 1 to 65535")]
    [TestCase("api.example.com:-443", "port range \"-443\" has no first port: write FIRST-LAST, such as \"8000-8099\"")]
    [TestCase("api.example.com:80-", "port range \"80-\" has no last port: write FIRST-LAST, such as \"8000-8099\"")] // a trial: port "" is not a number
    [TestCase("198.18.0.10:8100-8000", "port range \"8100-8000\" runs backwards")]
    [TestCase("198.18.0.10:1-2-3", "port \"2-3\" is not a number from 1 to 65535")]
    [TestCase("[2001:db8::1]443", "unexpected \"443\" after ']' (write [IPv6]:PORTS)")]
    [TestCase("[2001:db8::1]:", "names no port after ':'")]
    [TestCase(":443", "names no host")]
    [TestCase("[2001:db8::1", "has an unbalanced '['")]
    [TestCase("[api.example.com]", "is not a valid IPv6 address")]
    [TestCase("2001:db8::g", "is not a valid IPv6 address")]
    [TestCase("fe80::1%eth0", "scope ids (%) are not supported")]
    [TestCase("api_example!.com", "contains invalid character '!'")]
    [TestCase("bücher.example", "contains non-ASCII character 'ü'; use the punycode (xn--) form \"xn--bcher-kva.example\"")] // a trial: the form was not said
    [TestCase("*.Bücher.example:443,80", "contains non-ASCII character 'ü'; use the punycode (xn--) form \"*.xn--bcher-kva.example:443,80\"")]
    [TestCase("ü..example", "contains non-ASCII character 'ü'; use the punycode (xn--) form")] // none: an empty label
    [TestCase("-api.example.com", "label \"-api\" starts or ends with a hyphen")]
    [TestCase("api-.example.com", "label \"api-\" starts or ends with a hyphen")]
    [TestCase("api..example.com", "has an empty label")]
    [TestCase(".example.com", "has an empty label")]
    [TestCase("example.com..", "has an empty label")]
    [TestCase("a.*.com", "'*' may only stand alone (\"*\") or be the whole leftmost label (\"*.example.com\")")]
    [TestCase("**.example.com", "'*' may only stand alone (\"*\") or be the whole leftmost label (\"*.example.com\")")]
    [TestCase("*.*.example.com", "'*' may only stand alone (\"*\") or be the whole leftmost label (\"*.example.com\")")]
    [TestCase("*example.com", "'*' may only stand alone (\"*\") or be the whole leftmost label (\"*.example.com\")")]
    [TestCase("api.*", "'*' may only stand alone (\"*\") or be the whole leftmost label (\"*.example.com\")")]
    [TestCase("*..com", "has an empty label")]
    [TestCase("0x7f.0.0.1", "last label \"1\" is numeric: neither a host name nor a dotted decimal IPv4 address")]
    [TestCase("api.123", "last label \"123\" is numeric: neither a host name nor a dotted decimal IPv4 address")]
    [TestCase("10", "is not a valid IPv4 address (expected four dotted decimal numbers)")]
    [TestCase("1.2.3", "is not a valid IPv4 address (expected four dotted decimal numbers)")]
    [TestCase("1.2.3.4.5", "is not a valid IPv4 address (expected four dotted decimal numbers)")]
    [TestCase("1.2.3.256", "is not a valid IPv4 address (each part must be a number from 0 to 255)")]
    [TestCase("1.2..4", "is not a valid IPv4 address (each part must be a number from 0 to 255)")]
    [TestCase("010.0.0.1", "is not a valid IPv4 address (leading zeros are ambiguous: octal or decimal?)")]
    [TestCase("10.0.0.0/33", "prefix length \"/33\" is not a number from 0 to 32")]
    [TestCase("2001:db8::/129", "prefix length \"/129\" is not a number from 0 to 128")]
    [TestCase("10.0.0.0/", "prefix length \"/\" is not a number from 0 to 32")]
    [TestCase("10.0.0.0/8a", "prefix length \"/8a\" is not a number from 0 to 32")]
    [TestCase("10.0.0.0/-8", "prefix length \"/-8\" is not a number from 0 to 32")]
    [TestCase("10.0.0.0/0008", "prefix length \"/0008\" is not a number from 0 to 32")]
    [TestCase("10/8", "is not a valid IPv4 address (expected four dotted decimal numbers)")]
    [TestCase("api.example.com/24", "'/' is only for a network (ADDRESS/LENGTH), and \"api.example.com\" is not an IP address; a host takes no path")]
    [TestCase("[2001:db8::]/32", "write an IPv6 network without brackets (\"2001:db8::/32\")")]
    [TestCase("10.0.0.1/8", "has host bits set after /8 (did you mean \"10.0.0.0/8\"?)")]
    [TestCase("198.18.0.1/15", "has host bits set after /15 (did you mean \"198.18.0.0/15\"?)")]
    [TestCase("2001:db8::1/32", "has host bits set after /32 (did you mean \"2001:db8::/32\"?)")]
    [TestCase("0.0.0.0/0", "a /0 network would also open internal ranges such as instance metadata; use \"*\" for all public destinations")]
    [TestCase("::/0", "a /0 network would also open internal ranges such as instance metadata; use \"*\" for all public destinations")]
    public void RejectsInvalidEntriesNamingEntryAndReason(string entry, string reason)
    {
        bool parsed = DestinationRule.TryParse(entry, out DestinationRule? rule, out string? error);

        Assert.Multiple(() =>
        {
            Assert.That(parsed, Is.False);
            Assert.That(rule, Is.Null);
            // The entry as printed: a tab or other control character escaped (PrintableText).
            Assert.That(error, Is.EqualTo($"invalid destination \"{entry.Replace("\t", "\\t", StringComparison.Ordinal)}\": {reason}"));
        });
    }

    [Test]
    public void RejectsLabelLongerThan63()
    {
        string label63 = new('a', 63);
        string label64 = new('a', 64);

        Assert.Multiple(() =>
        {
            Assert.That(DestinationRule.TryParse(label63 + ".com", out _, out _), Is.True);
            Assert.That(DestinationRule.TryParse(label64 + ".com", out _, out string? error), Is.False);
            Assert.That(error, Is.EqualTo($"invalid destination \"{label64}.com\": label \"{label64}\" is longer than 63 characters"));
        });
    }

    [Test]
    public void RejectsNameLongerThan253()
    {
        string label = new('a', 63);
        string name253 = $"{label}.{label}.{label}.{new string('b', 61)}";
        string name254 = name253 + "b";

        Assert.Multiple(() =>
        {
            Assert.That(name253, Has.Length.EqualTo(253));
            Assert.That(DestinationRule.TryParse(name253, out _, out _), Is.True);
            Assert.That(DestinationRule.TryParse(name253 + ".", out _, out _), Is.True, "the trailing dot does not count");
            Assert.That(DestinationRule.TryParse(name254, out _, out string? error), Is.False);
            Assert.That(error, Is.EqualTo($"invalid destination \"{name254}\": name is longer than 253 characters"));
        });
    }

    [Test]
    public void NullEntryIsEmpty()
    {
        Assert.Multiple(() =>
        {
            Assert.That(DestinationRule.TryParse(null, out _, out string? error), Is.False);
            Assert.That(error, Is.EqualTo("invalid destination \"\": entry is empty"));
        });
    }

    [Test]
    public void ParseThrowsArgumentExceptionWithTheMessage()
    {
        var exception = Assert.Throws<ArgumentException>(() => DestinationRule.Parse("api.example.com:0"));

        Assert.Multiple(() =>
        {
            Assert.That(exception!.ParamName, Is.EqualTo("entry"));
            Assert.That(exception.Message, Does.StartWith("invalid destination \"api.example.com:0\": port \"0\" is not a number from 1 to 65535"));
        });
    }

    [TestCase("api.example.com:443", DestinationRuleKind.ExactHost, "api.example.com:443", new[] { 443 }, new[] { 80, 444 })]
    [TestCase("API.example.com.:443", DestinationRuleKind.ExactHost, "api.example.com:443", new[] { 443 }, new[] { 80 })]
    [TestCase("smtp.example.com:587,465", DestinationRuleKind.ExactHost, "smtp.example.com:587,465", new[] { 587, 465 }, new[] { 25 })]
    [TestCase("*.example.com:443", DestinationRuleKind.WildcardSubdomain, "*.example.com:443", new[] { 443 }, new[] { 8443 })]
    [TestCase("*:443", DestinationRuleKind.AllowAll, "*:443", new[] { 443 }, new[] { 22 })]
    [TestCase("203.0.113.7:8000-8100", DestinationRuleKind.Address, "203.0.113.7:8000-8100", new[] { 8000, 8050, 8100 }, new[] { 7999, 8101 })]
    [TestCase("203.0.113.0/24:8000-8100,443", DestinationRuleKind.Network, "203.0.113.0/24:8000-8100,443", new[] { 443, 8000 }, new[] { 80 })]
    [TestCase("[2001:db8::1]:443", DestinationRuleKind.Address, "[2001:db8::1]:443", new[] { 443 }, new[] { 80 })]
    [TestCase("2001:db8::/32:443", DestinationRuleKind.Network, "2001:db8::/32:443", new[] { 443 }, new[] { 80 })]
    [TestCase("[2001:db8::1]", DestinationRuleKind.Address, "2001:db8::1", new[] { 1, 443, 65535 }, new int[0])]
    [TestCase("2001:db8::1", DestinationRuleKind.Address, "2001:db8::1", new[] { 1, 443, 65535 }, new int[0])]
    [TestCase("api.example.com", DestinationRuleKind.ExactHost, "api.example.com", new[] { 1, 443, 65535 }, new int[0])]
    public void ParsesPorts(string entry, DestinationRuleKind kind, string text, int[] allowed, int[] denied)
    {
        DestinationRule rule = DestinationRule.Parse(entry);

        Assert.Multiple(() =>
        {
            Assert.That((rule.Kind, rule.Text), Is.EqualTo((kind, text)));
            Assert.That(allowed.Select(port => PortSet.Allows(rule.Ports, port)), Is.All.True);
            Assert.That(denied.Select(port => PortSet.Allows(rule.Ports, port)), Is.All.False);
            Assert.That(DestinationRule.Parse(rule.Text).Text, Is.EqualTo(text), "the canonical text parses to itself");
        });
    }
}
