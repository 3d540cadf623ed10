using System.Net;
using Egress.Enclave.Check;

namespace Egress.Tests.Enclave;

/// <summary>What <c>egress-enclave check</c> accepts as its target. Before, anything that was not an address was taken
/// as a name and answered "name not in allowlist" (exit 1): a network, a URL, a name with a space, 999.1.1.1.</summary>
public sealed class CheckTargetTests
{
    [TestCase("api.example.com", "api.example.com", null, null)]
    [TestCase("API.example.com.:8443", "API.example.com", null, 8443)]
    [TestCase("_sip._tcp.example.com", "_sip._tcp.example.com", null, null)]
    [TestCase("198.51.100.7:443", null, "198.51.100.7", 443)]
    [TestCase("2001:db8::1", null, "2001:db8::1", null)]
    [TestCase("[2001:db8::1]:443", null, "2001:db8::1", 443)]
    // A new user's trial: "'10]' is not a port (1-65535)"; the same text is an address in egress.destinations.
    [TestCase("[2001:db8::10]", null, "2001:db8::10", null)]
    public void NamesAndAddressesAreAccepted(string text, string? name, string? address, int? port)
    {
        Assert.That(CheckTarget.TryParse(text, out CheckTarget? target, out string? error), Is.True, error);
        Assert.That(target, Is.EqualTo(new CheckTarget(name, address is null ? null : IPAddress.Parse(address), port)));
    }

    /// <summary>From a new user's trial: "2001:db8::1:443" is an address (checked without a port), which the user took
    /// for port 443 of 2001:db8::1; the target now carries a note that says so.</summary>
    [TestCase("2001:db8::1:443", "'2001:db8::1:443' is read as the IPv6 address 2001:db8::1:443, with no port (a bare IPv6 address has none); for port 443 of 2001:db8::1, write [2001:db8::1]:443")]
    [TestCase("fd00::8080", null)]
    [TestCase("2001:db8::1:beef", null)]
    [TestCase("2001:db8:0:0:0:0:0:80", null)]
    public void AnIPv6AddressWhoseLastGroupLooksLikeAPortCarriesANote(string text, string? note)
    {
        Assert.That(CheckTarget.TryParse(text, out CheckTarget? target, out string? error), Is.True, error);
        Assert.That((target!.Address, target.Port, target.Note), Is.EqualTo((IPAddress.Parse(text), (int?)null, note)));
    }

    [TestCase("198.18.0.0/24", "'198.18.0.0/24' is a network or a path; check takes one name or address (e.g. one address of the network)")]
    [TestCase("https://api.example.com/", "'https://api.example.com/' is a URL; give the name or address it connects to (NAME, NAME:PORT, IP, IPv4:PORT or [IPv6]:PORT)")]
    // A new user's trial: a wildcard entry got only "contains invalid character '*'".
    [TestCase("*.amazonaws.com", "'*.amazonaws.com' is a wildcard entry; check takes one name or address that a connection would use: check a name under it, such as a.amazonaws.com")]
    [TestCase("*.amazonaws.com:443", "'*.amazonaws.com:443' is a wildcard entry; check takes one name or address that a connection would use: check a name under it, such as a.amazonaws.com:443")]
    [TestCase("*", "'*' is a wildcard entry; check takes one name or address that a connection would use: check any name, such as example.com")]
    [TestCase("*:443", "'*:443' is a wildcard entry; check takes one name or address that a connection would use: check any name, such as example.com:443")]
    [TestCase("*.", "'*.' is neither an IP address nor a host name: contains invalid character '*'")] // no domain: not a wildcard either
    [TestCase("a b", "'a b' is neither an IP address nor a host name: contains invalid character ' '")]
    [TestCase("999.1.1.1", "'999.1.1.1' is neither an IP address nor a host name: last label \"1\" is numeric: neither a host name nor a dotted decimal IPv4 address")]
    [TestCase("-x", "'-x' is neither an IP address nor a host name: label \"-x\" starts or ends with a hyphen")]
    [TestCase("a..b:443", "'a..b' is neither an IP address nor a host name: has an empty label")]
    [TestCase("bücher.allowed.test:443", "'bücher.allowed.test' is neither an IP address nor a host name: contains non-ASCII character 'ü'; use the punycode (xn--) form \"xn--bcher-kva.allowed.test\"")]
    [TestCase("api.example.com:99999", "'99999' is not a port (1-65535)")]
    [TestCase("[2001:db8::1]x", "'[2001:db8::1]x' is not NAME, IP, NAME:PORT, IPv4:PORT or [IPv6]:PORT")]
    [TestCase("[198.51.100.7]", "'[198.51.100.7]' is not an IPv6 address")]
    [TestCase("[2001:db8::1]:0", "'0' is not a port (1-65535)")]
    public void AnythingElseIsAnInputErrorThatSaysWhy(string text, string expected)
    {
        Assert.That(CheckTarget.TryParse(text, out CheckTarget? target, out string? error), Is.False, $"accepted as {target}");
        Assert.That(error, Is.EqualTo(expected));
    }
}
