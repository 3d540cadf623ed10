using System.Net;
using Egress.Configuration;
using FsCheck;
using FsCheck.Fluent;

namespace Egress.Tests.Configuration;

public sealed class EndPointTextTests
{
    [TestCase("127.0.0.1:4444", "127.0.0.1", 4444)]
    [TestCase("0.0.0.0:1", "0.0.0.0", 1)]
    [TestCase("[::1]:4444", "::1", 4444)]
    [TestCase("[::]:65535", "::", 65535)]
    public void ListenAddressIsParsed(string text, string address, int port)
    {
        Assert.That(EndPointText.TryParseListen(text, out IPEndPoint? endPoint, out string? problem), Is.True, problem);
        Assert.That(endPoint, Is.EqualTo(new IPEndPoint(IPAddress.Parse(address), port)));
    }

    [TestCase("10.0.0.2", "10.0.0.2", 53)]
    [TestCase("10.0.0.2:5353", "10.0.0.2", 5353)]
    [TestCase("2001:db8::1", "2001:db8::1", 53)]
    [TestCase("[2001:db8::1]", "2001:db8::1", 53)]
    [TestCase("[2001:db8::1]:54", "2001:db8::1", 54)]
    [TestCase("[::1:53]", "::0.1.0.83", 53)]
    [TestCase("[::1]:53", "::1", 53)]
    [TestCase("fd00::53", "fd00::53", 53)]
    [TestCase("2001:db8::1:0053", "2001:db8::1:53", 53)]
    public void UpstreamIsParsedWithPort53ByDefault(string text, string address, int port)
    {
        Assert.That(EndPointText.TryParseUpstream(text, out IPEndPoint? endPoint, out string? problem), Is.True, problem);
        Assert.That(endPoint, Is.EqualTo(new IPEndPoint(IPAddress.Parse(address), port)));
    }

    [TestCase("", "not an IP address")]
    [TestCase(":53", "not an IP address")]
    [TestCase("10.0.0.2:", "port must be a number between 1 and 65535")]
    [TestCase("10.0.0.2: 53", "port must be a number between 1 and 65535")]
    [TestCase("010.0.0.2", "not a dotted-quad IPv4 address")]
    [TestCase("10", "not a dotted-quad IPv4 address")]
    // A new user's trial: "::1:53" was read as the address ::0.1.0.83 (port 53 by default), without a word.
    [TestCase("::1:53", "ambiguous: for port 53 of ::1 write \"[::1]:53\"; for the address ::1:53 itself write \"[::1:53]\"")]
    [TestCase("2001:db8::1:5353", "ambiguous: for port 5353 of 2001:db8::1 write \"[2001:db8::1]:5353\"; for the address 2001:db8::1:5353 itself write \"[2001:db8::1:5353]\"")]
    // A new user's trial: each passed --check-config ("DNS upstreams: 0.0.0.0:53") and could answer nothing.
    [TestCase("0.0.0.0", "the unspecified address (\"any\") is no resolver: write the resolver's own address")]
    [TestCase("[::]:53", "the unspecified address (\"any\") is no resolver: write the resolver's own address")]
    [TestCase("255.255.255.255", "the broadcast address is no resolver: write the resolver's own address")]
    [TestCase("224.0.0.251:5353", "a multicast address (e.g. mDNS) is no resolver that answers forwarded queries: write a unicast address")]
    [TestCase("239.255.255.250", "a multicast address (e.g. mDNS) is no resolver that answers forwarded queries: write a unicast address")]
    [TestCase("[ff02::fb]:5353", "a multicast address (e.g. mDNS) is no resolver that answers forwarded queries: write a unicast address")]
    public void BadUpstreamIsRejectedWithItsProblem(string text, string expected)
    {
        Assert.That(EndPointText.TryParseUpstream(text, out IPEndPoint? endPoint, out string? problem), Is.False);
        Assert.That((endPoint, problem), Is.EqualTo(((IPEndPoint?)null, expected)));
    }

    // An operator's trial: "[::ffff:127.0.0.1]:4444" passed --check-config and rules --apply (an ip6tables DNAT to it),
    // then egress-enclave could not bind it (EINVAL: its IPv6 sockets are IPv6 only); the same in dns_listen, a tcp://
    // tunnel endpoint, and as a DNS upstream (every query SERVFAIL). It is refused where it is written instead.
    [TestCase("[::ffff:127.0.0.1]:4444", "127.0.0.1")]
    [TestCase("[::FFFF:10.0.0.1]:53", "10.0.0.1")]
    [TestCase("[0:0:0:0:0:ffff:c612:35]:53", "198.18.0.53")]
    public void AnIPv4MappedAddressIsRefused(string text, string ipv4)
    {
        string expected = $"an IPv4-mapped IPv6 address, which an IPv6 socket here cannot use: write the IPv4 address {ipv4}";
        Assert.Multiple(() =>
        {
            Assert.That(EndPointText.TryParseListen(text, out IPEndPoint? listen, out string? problem), Is.False);
            Assert.That((listen, problem), Is.EqualTo(((IPEndPoint?)null, expected)));
            Assert.That(EndPointText.TryParseUpstream(text, out IPEndPoint? upstream, out problem), Is.False);
            Assert.That((upstream, problem), Is.EqualTo(((IPEndPoint?)null, expected)));
            Assert.That(EndPointText.TryParseUpstream(text[1..text.IndexOf(']', StringComparison.Ordinal)], out upstream, out problem), Is.False);
            Assert.That((upstream, problem), Is.EqualTo(((IPEndPoint?)null, expected)));
        });
    }

    [Test]
    public void AnIPv4MappedProxyListenAddressIsAConfigurationError()
    {
        var error = Assert.Throws<ConfigurationException>(() =>
            EgressConfiguration.Parse("[enclave]\nproxy_listen = [\"[::ffff:127.0.0.1]:4444\"]\n", "enclave.toml"));
        Assert.That(error!.Message, Is.EqualTo(
            "enclave.toml:2:17: error: invalid listen address \"[::ffff:127.0.0.1]:4444\": an IPv4-mapped IPv6 address, which an "
            + "IPv6 socket here cannot use: write the IPv4 address 127.0.0.1 (key 'enclave.proxy_listen')"));
    }

    [Test]
    public void FormattedIPv4EndPointsRoundTrip() =>
        Prop.ForAll<uint, ushort>((address, port) => RoundTrips(new IPEndPoint(new IPAddress(address), port))).QuickCheckThrowOnFailure();

    [Test]
    public void FormattedIPv6EndPointsRoundTrip() =>
        Prop.ForAll<ulong, ulong, ushort>((high, low, port) =>
        {
            var bytes = new byte[16];
            BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), high);
            BitConverter.TryWriteBytes(bytes.AsSpan(8, 8), low);
            return RoundTrips(new IPEndPoint(new IPAddress(bytes), port));
        }).QuickCheckThrowOnFailure();

    // Port 0 is refused (a listener needs a fixed port), and so is an IPv4-mapped address; every other formatted endpoint reads back equal.
    private static bool RoundTrips(IPEndPoint expected)
    {
        bool parsed = EndPointText.TryParseListen(expected.ToString(), out IPEndPoint? actual, out _);
        return expected.Port == 0 || expected.Address.IsIPv4MappedToIPv6 ? !parsed : parsed && expected.Equals(actual);
    }
}
