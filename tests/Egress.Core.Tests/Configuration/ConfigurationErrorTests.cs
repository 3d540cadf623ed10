using Egress.Configuration;

namespace Egress.Tests.Configuration;

public sealed class ConfigurationErrorTests
{
    private const string Source = "enclave.toml";

    [TestCase("[egress]\nenabeld = true\n", 2, 1, "egress.enabeld", "unknown key; did you mean 'enabled'?", TestName = "Typo in a key of [egress]")]
    [TestCase("[egres]\nenabled = true\n", 1, 2, "egres", "unknown table; did you mean [egress]?", TestName = "Typo in a section name")]
    [TestCase("[foo]\nx = 1\n", 1, 2, "foo", "unknown table; Egress reads [egress], [tunnel], [enclave], [host], [dns], [relay] (and ignores Evervault's)", TestName = "Unknown table")] // a trial: "unknown key"
    [TestCase("[sigining]\nx = 1\n", 1, 2, "sigining", "unknown table; did you mean [signing]?", TestName = "Typo in an Evervault table")] // a review: the suggestion was lost
    [TestCase("[Signing]\nx = 1\n", 1, 2, "Signing", "unknown table; did you mean [signing]?", TestName = "An Evervault table in capitals")]
    [TestCase("foo.bar = 1\n", 1, 1, "foo", "unknown key", TestName = "Unknown dotted top-level key")] // no table header: not "unknown table"
    [TestCase("colour = \"red\"\n", 1, 1, "colour", "unknown key", TestName = "Unknown top-level key")]
    [TestCase("version = 1\nnmae = \"x\"\n", 2, 1, "nmae", "unknown key; did you mean 'name'?", TestName = "Typo in an Evervault top-level key")]
    [TestCase("[egress.extra]\nx = 1\n", 1, 9, "egress.extra", "unknown key", TestName = "Unknown sub-table of an Egress section")]
    [TestCase("egress = { enabled = true, destinationz = [] }\n", 1, 28, "egress.destinationz", "unknown key; did you mean 'destinations'?", TestName = "Unknown key in an inline table")]
    [TestCase("[tunnel]\nstatus_timeout = 10000\n", 2, 1, "tunnel.status_timeout", "unknown key; did you mean 'status_timeout_ms'?", TestName = "Duration key without its unit")]
    // A trial: these got a bare "unknown key".
    [TestCase("[enclave]\nproxy_port = 4444\n", 2, 1, "enclave.proxy_port", "unknown key; did you mean 'enclave.proxy_listen'?", TestName = "proxy_port is not a key (proxy_listen is)")]
    [TestCase("[dns]\nupstreams = []\n", 2, 1, "dns.upstreams", "unknown key; did you mean 'host.dns_upstreams'?", TestName = "upstreams in [dns]")]
    [TestCase("[tunnel]\nendpoint = \"vsock://3:4433\"\n", 2, 1, "tunnel.endpoint", "unknown key; did you mean 'tunnel.enclave_endpoint' or 'tunnel.host_endpoint'?", TestName = "endpoint in [tunnel]")]
    // An operator's trial: a key written in the wrong section, or in capitals, got a bare "unknown key".
    [TestCase("[host]\nproxy_listen = [\"127.0.0.1:4444\"]\n", 2, 1, "host.proxy_listen", "unknown key here; 'proxy_listen' is a key of [enclave]", TestName = "A key of [enclave] in [host]")]
    [TestCase("[tunnel]\nconnect_timeout_ms = 5000\n", 2, 1, "tunnel.connect_timeout_ms", "unknown key here; 'connect_timeout_ms' is a key of [host]", TestName = "A key of [host] in [tunnel]")]
    [TestCase("[dns]\naudit_log = \"stdout\"\n", 2, 1, "dns.audit_log", "unknown key here; 'audit_log' is a key of [enclave] and [host]", TestName = "A key of two sections elsewhere")]
    [TestCase("[EGRESS]\nenabled = true\n", 1, 2, "EGRESS", "unknown table; did you mean [egress]?", TestName = "A section name in capitals")]
    [TestCase("[egress]\nENABLED = true\n", 2, 1, "egress.ENABLED", "unknown key; did you mean 'enabled'?", TestName = "A key in capitals")]
    [TestCase("[host]\n\n  dns_upstream = []\n", 3, 3, "host.dns_upstream", "unknown key; did you mean 'dns_upstreams'?", TestName = "Unknown key in [host], indented")]
    [TestCase("[dns]\nttl_floor = 1\n", 2, 1, "dns.ttl_floor", "unknown key; did you mean 'ttl_floor_seconds'?", TestName = "Unknown key in [dns]")]
    [TestCase("[relay]\nidle_timeout_ms = 1\n", 2, 1, "relay.idle_timeout_ms", "unknown key; did you mean 'idle_timeout_seconds'?", TestName = "Duration key with the wrong unit")]
    [TestCase("[relay]\nkeepalive = true\n", 2, 1, "relay.keepalive", "unknown key; did you mean 'host.keepalive_idle_seconds' or 'host.keepalive_interval_seconds' or 'host.keepalive_probes'?", TestName = "Unknown key in [relay]")]
    [TestCase("[relay]\nturbo = true\n", 2, 1, "relay.turbo", "unknown key", TestName = "Unknown key like no other")]
    [TestCase("[egress]\nports = []\n", 2, 9, "egress.ports", "an empty list would allow no port at all; remove the key to allow every port, or list the ports", TestName = "Evervault egress.ports empty")]
    [TestCase("[egress]\nports = [0]\n", 2, 10, "egress.ports", "port \"0\" is not a number from 1 to 65535", TestName = "Evervault egress.ports zero")]
    [TestCase("[egress]\nports = [\"8000-8100\"]\n", 2, 10, "egress.ports", "port \"8000-8100\" is not a number from 1 to 65535 (egress.ports lists single ports; a range or a list goes in a destination entry, such as \"api.example.com:8000-8100\")", TestName = "Evervault egress.ports range")]
    [TestCase("[egress]\nports = 443\n", 2, 9, "egress.ports", "expected an array of ports, e.g. [443, 8443], found an integer", TestName = "Evervault egress.ports not an array")]
    public void UnknownKeysPointAtTheKey(string text, int line, int column, string key, string problem) =>
        AssertError(text, line, column, key, problem);

    [TestCase("[egress]\nenabled = \"yes\"\n", 2, 11, "egress.enabled", "expected a boolean, found a string", TestName = "String where a boolean is expected")]
    [TestCase("egress.enabled = 1\n", 1, 18, "egress.enabled", "expected a boolean, found an integer", TestName = "Integer where a boolean is expected (dotted key)")]
    [TestCase("[egress]\nenabled = 1979-05-27\n", 2, 11, "egress.enabled", "expected a boolean, found a date-time", TestName = "Date where a boolean is expected")]
    [TestCase("egress = true\n", 1, 10, "egress", "expected a table, found a boolean", TestName = "Boolean where a section is expected")]
    [TestCase("[[egress]]\nenabled = true\n", 1, 3, "egress", "expected a table, found an array", TestName = "Array of tables where a section is expected")]
    [TestCase("[egress]\ndestinations = \"api.example.com\"\n", 2, 16, "egress.destinations", "expected an array of strings, found a string", TestName = "String where an array is expected")]
    [TestCase("[egress]\ndestinations = [\"a\", 5]\n", 2, 22, "egress.destinations", "expected a string, found an integer", TestName = "Integer inside the destinations array")]
    [TestCase("[egress]\ndestinations = [[\"a\"]]\n", 2, 17, "egress.destinations", "expected a string, found an array", TestName = "Nested array inside the destinations array")]
    [TestCase("[host]\ndns_timeout_ms = 2.5\n", 2, 18, "host.dns_timeout_ms", "expected an integer, found a float", TestName = "Float where an integer is expected")]
    [TestCase("[host]\ndns_timeout_ms = \"2s\"\n", 2, 18, "host.dns_timeout_ms", "expected an integer, found a string", TestName = "String where an integer is expected")]
    [TestCase("[tunnel]\nenclave_endpoint = 4433\n", 2, 20, "tunnel.enclave_endpoint", "expected a string, found an integer", TestName = "Integer where a string is expected")]
    [TestCase("[enclave]\ndns_listen = \"127.0.0.1:53\"\n", 2, 14, "enclave.dns_listen", "expected an array of strings, found a string", TestName = "String where a list of addresses is expected")]
    public void TypeErrorsPointAtTheValue(string text, int line, int column, string key, string problem) =>
        AssertError(text, line, column, key, problem);

    [TestCase("[host]\nconnect_timeout_ms = -5\n", 2, 22, "host.connect_timeout_ms", "must be between 1 and 2147483647, found -5", TestName = "Negative timeout")]
    [TestCase("[host]\nheader_timeout_ms = 0\n", 2, 21, "host.header_timeout_ms", "must be between 1 and 2147483647, found 0", TestName = "Zero millisecond timeout")]
    [TestCase("[enclave]\ndns_query_timeout_ms = 2147483648\n", 2, 24, "enclave.dns_query_timeout_ms", "must be between 1 and 2147483647, found 2147483648", TestName = "Timeout longer than a timer can wait")]
    [TestCase("[egress]\ntls_server_name = \"strict\"\n", 2, 19, "egress.tls_server_name", "expected \"require\" (a TLS ClientHello to a learned address must name it), \"if-present\" (only when it names a server) or \"off\", found \"strict\"", TestName = "Unknown TLS server-name mode")]
    [TestCase("[enclave]\nnetfilter = \"nftables\"\n", 2, 13, "enclave.netfilter", "expected \"auto\", \"nft\" (nf_tables, iptables-nft) or \"legacy\" (iptables-legacy), found \"nftables\"", TestName = "Unknown netfilter backend")]
    [TestCase("[enclave]\nnetfilter = \"Legacy\"\n", 2, 13, "enclave.netfilter", "expected \"auto\", \"nft\" (nf_tables, iptables-nft) or \"legacy\" (iptables-legacy), found \"Legacy\"", TestName = "Netfilter backend names are lower case")]
    [TestCase("[enclave]\nnetfilter = true\n", 2, 13, "enclave.netfilter", "expected a string, found a boolean", TestName = "Boolean where the netfilter backend is expected")]
    [TestCase("[relay]\nsplice = \"no\"\n", 2, 10, "relay.splice", "expected a boolean, found a string", TestName = "String where the splice switch is expected")]
    [TestCase("[relay]\nidle_timeout_seconds = -1\n", 2, 24, "relay.idle_timeout_seconds", "must be between 0 and 2147483, found -1", TestName = "Negative idle timeout")]
    [TestCase("[relay]\nidle_timeout_seconds = 2147484\n", 2, 24, "relay.idle_timeout_seconds", "must be between 0 and 2147483, found 2147484", TestName = "Idle timeout too long")]
    [TestCase("[relay]\nhalf_closed_timeout_seconds = -1\n", 2, 31, "relay.half_closed_timeout_seconds", "must be between 0 and 2147483, found -1", TestName = "Negative half-closed timeout")]
    [TestCase("[dns]\ngrace_seconds = -1\n", 2, 17, "dns.grace_seconds", "must be between 0 and 2147483, found -1", TestName = "Negative grace")]
    [TestCase("[host]\nmax_streams = -1\n", 2, 15, "host.max_streams", "must be between 0 and 2147483647, found -1", TestName = "Negative stream limit")]
    [TestCase("[host]\nkeepalive_idle_seconds = -1\n", 2, 26, "host.keepalive_idle_seconds", "must be between 0 and 32767, found -1", TestName = "Negative keepalive idle time")]
    [TestCase("[host]\nkeepalive_idle_seconds = 32768\n", 2, 26, "host.keepalive_idle_seconds", "must be between 0 and 32767, found 32768", TestName = "Keepalive idle time beyond the kernel's limit")]
    [TestCase("[host]\nkeepalive_interval_seconds = 0\n", 2, 30, "host.keepalive_interval_seconds", "must be between 1 and 32767, found 0", TestName = "Zero keepalive interval")]
    [TestCase("[host]\nkeepalive_probes = 0\n", 2, 20, "host.keepalive_probes", "must be between 1 and 127, found 0", TestName = "No keepalive probes")]
    [TestCase("[host]\nkeepalive_probes = 128\n", 2, 20, "host.keepalive_probes", "must be between 1 and 127, found 128", TestName = "Keepalive probes beyond the kernel's limit")]
    [TestCase("[dns]\ncache_max_entries = 0\n", 2, 21, "dns.cache_max_entries", "must be between 1 and 2147483647, found 0", TestName = "Empty cache")]
    [TestCase("[dns]\ncache_max_entries = 0x80000000\n", 2, 21, "dns.cache_max_entries", "must be between 1 and 2147483647, found 2147483648", TestName = "Cache size beyond int")]
    [TestCase("[tunnel]\nstatus_timeout_ms = 5000\n", 2, 21, "tunnel.status_timeout_ms", "tunnel.status_timeout_ms (5000) must be greater than host.connect_timeout_ms (5000), or the enclave gives up before the host reports", TestName = "Status timeout equal to the connect timeout")]
    [TestCase("[host]\nconnect_timeout_ms = 20000\n", 2, 22, "host.connect_timeout_ms", "tunnel.status_timeout_ms (10000) must be greater than host.connect_timeout_ms (20000), or the enclave gives up before the host reports", TestName = "Connect timeout above the default status timeout")]
    [TestCase("[host]\nconnect_timeout_ms = 3000\n[tunnel]\nstatus_timeout_ms = 2000\n", 4, 21, "tunnel.status_timeout_ms", "tunnel.status_timeout_ms (2000) must be greater than host.connect_timeout_ms (3000), or the enclave gives up before the host reports", TestName = "Both timeouts set: points at the status timeout")]
    public void InvalidValuesPointAtTheValue(string text, int line, int column, string key, string problem) =>
        AssertError(text, line, column, key, problem);

    [TestCase("[enclave]\nproxy_listen = [\"127.0.0.1\"]\n", 2, 17, "invalid listen address \"127.0.0.1\": missing port (write \"address:port\")", TestName = "Listen address without port")]
    [TestCase("[enclave]\nproxy_listen = [\"::1\"]\n", 2, 17, "invalid listen address \"::1\": missing port (write \"[address]:port\")", TestName = "IPv6 listen address without port")]
    [TestCase("[enclave]\nproxy_listen = [\"::1:4444\"]\n", 2, 17, "invalid listen address \"::1:4444\": missing port (write \"[address]:port\")", TestName = "IPv6 listen address with an unbracketed port")]
    [TestCase("[enclave]\nproxy_listen = [\"127.0.0.1:0\"]\n", 2, 17, "invalid listen address \"127.0.0.1:0\": port must be a number between 1 and 65535", TestName = "Listen port 0")]
    [TestCase("[enclave]\nproxy_listen = [\"127.0.0.1:65536\"]\n", 2, 17, "invalid listen address \"127.0.0.1:65536\": port must be a number between 1 and 65535", TestName = "Listen port 65536")]
    [TestCase("[enclave]\nproxy_listen = [\"127.0.0.1:+80\"]\n", 2, 17, "invalid listen address \"127.0.0.1:+80\": port must be a number between 1 and 65535", TestName = "Listen port with a sign")]
    [TestCase("[enclave]\nproxy_listen = [\"localhost:4444\"]\n", 2, 17, "invalid listen address \"localhost:4444\": not an IP address", TestName = "Host name as listen address")]
    [TestCase("[enclave]\nproxy_listen = [\"127.1:4444\"]\n", 2, 17, "invalid listen address \"127.1:4444\": not a dotted-quad IPv4 address", TestName = "Shorthand IPv4 listen address")]
    [TestCase("[enclave]\nproxy_listen = [\"[127.0.0.1]:4444\"]\n", 2, 17, "invalid listen address \"[127.0.0.1]:4444\": brackets are only for IPv6 addresses", TestName = "Bracketed IPv4 listen address")]
    [TestCase("[enclave]\nproxy_listen = [\"[::1:4444\"]\n", 2, 17, "invalid listen address \"[::1:4444\": missing ']'", TestName = "Unclosed bracket")]
    [TestCase("[enclave]\nproxy_listen = [\"[::1]4444\"]\n", 2, 17, "invalid listen address \"[::1]4444\": expected ':' and a port after ']'", TestName = "No colon after the bracket")]
    [TestCase("[enclave]\nproxy_listen = []\n", 2, 16, "must list at least one address", TestName = "Empty proxy listen list")]
    [TestCase("[enclave]\nproxy_listen = [\"127.0.0.1:4444\", \"127.0.0.1:4444\"]\n", 2, 35, "\"127.0.0.1:4444\" is listed twice", TestName = "Listen address listed twice")]
    public void InvalidProxyListenAddressesPointAtTheEntry(string text, int line, int column, string problem) =>
        AssertError(text, line, column, "enclave.proxy_listen", problem);

    [Test]
    public void InvalidDnsListenAddressPointsAtTheEntryOnItsOwnLine() =>
        AssertError("[enclave]\ndns_listen = [\n  \"127.0.0.1:53\",\n  \"10.0.0.1\",\n]\n", 4, 3, "enclave.dns_listen", "invalid listen address \"10.0.0.1\": missing port (write \"address:port\")");

    // Before, each was accepted and egress-enclave failed at start with "cannot listen for DNS on 127.0.0.1:53 ...:
    // Address already in use ... is another resolver bound there?".
    [TestCase("[enclave]\nproxy_listen = [\"127.0.0.1:53\"]\n", 2, 17, "enclave.proxy_listen", "enclave.proxy_listen 127.0.0.1:53 and enclave.dns_listen 127.0.0.1:53 overlap: the proxy and the DNS forwarder (which also listens on TCP) each need addresses of their own", TestName = "Proxy on the default DNS address")]
    [TestCase("[enclave]\ndns_listen = [\"[::1]:53\", \"127.0.0.1:4444\"]\n", 2, 27, "enclave.dns_listen", "enclave.proxy_listen 127.0.0.1:4444 and enclave.dns_listen 127.0.0.1:4444 overlap: the proxy and the DNS forwarder (which also listens on TCP) each need addresses of their own", TestName = "DNS on the default proxy address")]
    [TestCase("[enclave]\nproxy_listen = [\"0.0.0.0:5353\"]\ndns_listen = [\"127.0.0.1:5353\"]\n", 3, 15, "enclave.dns_listen", "enclave.proxy_listen 0.0.0.0:5353 and enclave.dns_listen 127.0.0.1:5353 overlap: the proxy and the DNS forwarder (which also listens on TCP) each need addresses of their own", TestName = "Proxy on every address, DNS on one, same port")]
    public void ProxyAndDnsListenAddressesMustNotOverlap(string text, int line, int column, string key, string problem) =>
        AssertError(text, line, column, key, problem);

    // Each family is bound on its own (the listeners are not dual-mode), so these do not overlap.
    [TestCase("[enclave]\nproxy_listen = [\"[::]:5353\"]\ndns_listen = [\"0.0.0.0:5353\"]\n")]
    [TestCase("[enclave]\nproxy_listen = [\"127.0.0.1:5353\"]\ndns_listen = [\"127.0.0.2:5353\"]\n")]
    [TestCase("[enclave]\nproxy_listen = [\"0.0.0.0:4444\"]\ndns_listen = [\"0.0.0.0:53\"]\n")]
    public void ListenAddressesApartAreAccepted(string text) =>
        Assert.That(() => EgressConfiguration.Parse(text, "enclave.toml"), Throws.Nothing);

    [TestCase("[host]\ndns_upstreams = [\"dns.google\"]\n", 2, 18, "invalid DNS upstream \"dns.google\": not an IP address", TestName = "Host name as DNS upstream")]
    [TestCase("[host]\ndns_upstreams = [\"10.0.0.2:0\"]\n", 2, 18, "invalid DNS upstream \"10.0.0.2:0\": port must be a number between 1 and 65535", TestName = "DNS upstream port 0")]
    [TestCase("[host]\ndns_upstreams = [\"10.0.0.2\", \"10.0.0.2:53\"]\n", 2, 30, "\"10.0.0.2:53\" is listed twice", TestName = "DNS upstream listed twice (default port)")]
    public void InvalidDnsUpstreamsPointAtTheEntry(string text, int line, int column, string problem) =>
        AssertError(text, line, column, "host.dns_upstreams", problem);

    [Test]
    public void TyposAreFoundWithCrLfLineEndings() =>
        AssertError("version = 1\r\n\r\n[egress]\r\nenabled = true\r\nenabeld = true\r\n", 5, 1, "egress.enabeld", "unknown key; did you mean 'enabled'?");

    [Test]
    public void ValueErrorsAreFoundWithCrLfLineEndings() =>
        AssertError("[host]\r\nconnect_timeout_ms = 1\r\ndns_timeout_ms = -1\r\n", 3, 18, "host.dns_timeout_ms", "must be between 1 and 2147483647, found -1");

    [Test]
    public void SyntaxErrorHasItsLocationAndNoKey()
    {
        ConfigurationException error = Fail("[egress]\nenabled = tru\n");

        Assert.Multiple(() =>
        {
            Assert.That(error.SourceName, Is.EqualTo(Source));
            Assert.That(error.Line, Is.EqualTo(2));
            Assert.That(error.Column, Is.EqualTo(11));
            Assert.That(error.Key, Is.Null);
            Assert.That(error.Message, Does.StartWith("enclave.toml:2:11: error: "));
            Assert.That(error.Message, Does.Contain("tru"));
            Assert.That(error.Message, Does.Not.Contain("(key '"));
        });
    }

    // A trial: a no-break space copied with a line got Tomlyn's "Unexpected token [ ] found", naming nothing visible.
    [TestCase("[egress]\nenabled\u00A0= true\n", 2, 8, "no-break space (U+00A0)")]
    [TestCase("[egress]\nenabled = true\n\u00A0destinations = []\n", 3, 1, "no-break space (U+00A0)")]
    [TestCase("[egress]\nenabled =\u2009true\n", 2, 10, "typographic space (U+2009)")]
    public void AnUnusualSpaceIsNamedWhereItIs(string text, int line, int column, string named)
    {
        ConfigurationException error = Fail(text);

        Assert.That(
            (error.Line, error.Column, error.Problem),
            Is.EqualTo((line, column, $"a {named} here, which TOML does not allow: only spaces and tabs separate its parts (text copied from a web page or a word processor often carries one); retype it as a space")));
    }

    [Test]
    public void UnterminatedStringIsASyntaxErrorOnItsLine()
    {
        ConfigurationException error = Fail("[egress]\r\ndestinations = [\"api.example.com]\r\n");

        Assert.Multiple(() =>
        {
            Assert.That(error.Line, Is.EqualTo(2));
            Assert.That(error.Key, Is.Null);
            Assert.That(error.Message, Does.StartWith($"enclave.toml:2:{error.Column}: error: "));
        });
    }

    // Tomlyn's message quoted the first definition ("The key `egress.enabled` is already defined at (2,1) with
    // `enabled = false` and cannot be redefined"); the key is named as every other error names it.
    [Test]
    public void DuplicateKeyIsReportedAtTheSecondDefinition() =>
        AssertError("[egress]\nenabled = false\nenabled = true\n", 3, 1, "egress.enabled", "defined twice (first at line 2)");

    [Test]
    public void RedefinedSectionIsReportedAtTheSecondHeader()
    {
        ConfigurationException error = Fail("[egress]\nenabled = true\n\n[egress]\ndestinations = []\n");

        Assert.That((error.Line, error.Column), Is.EqualTo((4, 1)));
    }

    // An operator's trial: Tomlyn's message for a redefined table quotes the first table's text, newlines and all
    // ("The key `egress` is already defined at (1,1) with `[egress]\nenabled = true\n` and cannot be redefined").
    [TestCase("[egress]\nenabled = true\n\n[egress]\ndestinations = []\n", 4, 1, "table [egress] is defined twice (first at line 1)", TestName = "A section defined twice")]
    [TestCase("egress.enabled = true\n\n[egress]\ndestinations = []\n", 3, 1, "table [egress] is defined twice (first at line 1)", TestName = "A section defined by a dotted key, then by a header")]
    [TestCase("[scaling]\na = 1\n[egress]\nenabled = true\n[ scaling ]\nb = 2\n", 5, 1, "table [scaling] is defined twice (first at line 1)", TestName = "An Evervault table defined twice")]
    [TestCase("[host.more]\na = 1\n[host.\"more\"]\nb = 2\n", 3, 1, "table [host.more] is defined twice (first at line 1)", TestName = "A sub-table defined twice, once quoted")]
    public void RedefinedTableIsOneLineNamingTheTableAndItsFirstDefinition(string text, int line, int column, string problem) =>
        AssertSyntaxError(text, line, column, problem);

    // An operator's trial: Tomlyn's words ("Invalid control character ...", or none: a NUL in a comment) for what TOML
    // forbids anywhere in the text.
    [TestCase("[egress]\ndestinations = [\"a\0b\"]\n", 2, 19, "control character \\u0000 is not allowed in TOML (in a string, write it as the escape \\u0000)", TestName = "NUL in a string")]
    [TestCase("[egress]\n# a\0b\nenabled = true\n", 2, 4, "control character \\u0000 is not allowed in TOML (in a string, write it as the escape \\u0000)", TestName = "NUL in a comment")]
    [TestCase("[egress]\nenabled = true # \u001b[31mred\n", 2, 18, "control character \\u001B is not allowed in TOML (in a string, write it as the escape \\u001B)", TestName = "ESC in a comment")]
    [TestCase("[egress]\nenabled = true\u007f\n", 2, 15, "control character \\u007F is not allowed in TOML (in a string, write it as the escape \\u007F)", TestName = "DEL after a value")]
    [TestCase("[egress]\ndestinations = [\"a\u000cb\"]\n", 2, 19, "control character \\u000C is not allowed in TOML (in a string, write it as the escape \\u000C)", TestName = "Form feed in a string")]
    [TestCase("[egress]\renabled = true\n", 1, 9, "a carriage return (\\r) not followed by a line feed; TOML lines end with \\n or \\r\\n", TestName = "A carriage return alone")]
    public void ForbiddenControlCharacterIsNamedWhereItIs(string text, int line, int column, string problem) =>
        AssertSyntaxError(text, line, column, problem);

    // A new user's trial: an array left open was reported at 1:1 (Tomlyn's end-of-file position), in Tomlyn's token names.
    [TestCase("[egress]\nenabled = true\ndestinations = [\"a.com\",\n", 3, 25, "The file ends early. Expecting a closing `]` for an array", TestName = "An array left open at the end")]
    [TestCase("[egress]\nenabled = true\ndestinations = [\"a.com\",\n\n  \n", 3, 25, "The file ends early. Expecting a closing `]` for an array", TestName = "An array left open, blank lines after it")]
    [TestCase("[egress\nenabled = true\n", 1, 8, "Unexpected end of line while expecting `]`", TestName = "A table header left open")]
    public void AFileThatEndsEarlyIsReportedWhereItEndsInPlainWords(string text, int line, int column, string problem) =>
        AssertSyntaxError(text, line, column, problem);

    // An operator's trial: Tomlyn's message for an integer beyond 64 bits names neither the key nor a range.
    [TestCase("[host]\nmax_streams = 99999999999999999999999\n", 2, 15, "host.max_streams", "must be between 0 and 2147483647, found 99999999999999999999999", TestName = "Stream limit beyond 64 bits")]
    [TestCase("host = { max_streams = -99999999999999999999999 }\n", 1, 24, "host.max_streams", "must be between 0 and 2147483647, found -99999999999999999999999", TestName = "Negative stream limit beyond 64 bits, inline table")]
    [TestCase("dns.cache_max_entries = 0xFFFFFFFFFFFFFFFFFF\n", 1, 25, "dns.cache_max_entries", "must be between 1 and 2147483647, found 0xFFFFFFFFFFFFFFFFFF", TestName = "Hexadecimal cache size beyond 64 bits, dotted key")]
    [TestCase("[egress]\nports = [443, 99999999999999999999999]\n", 2, 15, "egress.ports", "integer 99999999999999999999999 does not fit in 64 bits (TOML integers are -9223372036854775808 to 9223372036854775807)", TestName = "Port beyond 64 bits")]
    [TestCase("[[host.enclaves]]\ncid = 99999999999999999999999\nconfig = \"a.toml\"\n", 2, 7, "host.enclaves.cid", "integer 99999999999999999999999 does not fit in 64 bits (TOML integers are -9223372036854775808 to 9223372036854775807)", TestName = "CID beyond 64 bits")]
    [TestCase("[scaling]\ndesired_replicas = 99999999999999999999999\n", 2, 20, "scaling.desired_replicas", "integer 99999999999999999999999 does not fit in 64 bits (TOML integers are -9223372036854775808 to 9223372036854775807)", TestName = "Evervault integer beyond 64 bits")]
    public void IntegerBeyond64BitsNamesItsKeyAndRange(string text, int line, int column, string key, string problem) =>
        AssertError(text, line, column, key, problem);

    // Tomlyn's event parser alone cannot tell these from real duplicates (it reports a reopened table's name again and
    // misses a redefined [section]), which is why the reader also runs Tomlyn's validating syntax parser.
    [TestCase("egress.enabled = true\negress.destinations = [\"a.example\"]\n", TestName = "Two dotted keys of one section")]
    [TestCase("[scaling]\na = 1\n[egress]\nenabled = true\n[scaling.more]\na = 2\n", TestName = "An Evervault table reopened by a sub-table after another section")]
    [TestCase("[scaling]\na = 1\n[scaling.more]\na = 2\n", TestName = "A table and its sub-table")]
    [TestCase("[[signing]]\na = 1\n[[signing]]\na = 2\n", TestName = "An array of tables, one key in each")]
    public void KeysDefinedOncePerTableAreAccepted(string text) =>
        Assert.That(() => EgressConfiguration.Parse(text, Source), Throws.Nothing);

    // Tomlyn numbers the tables of an array in its path (host.enclaves.0.cid); the key is named as the project names it.
    [TestCase("[[host.enclaves]]\ncid = 16\ncid = 17\n", 3, 1, "host.enclaves.cid", "defined twice (first at line 2)", TestName = "A key defined twice in an array of tables")]
    [TestCase("egress = { enabled = true, enabled = false }\n", 1, 28, "egress.enabled", "defined twice (first at line 1)", TestName = "A key defined twice in an inline table")]
    public void DuplicateKeyIsNamedAsTheProjectNamesIt(string text, int line, int column, string key, string problem) =>
        AssertError(text, line, column, key, problem);

    // Errors at the end of the text keep Tomlyn's words (Tomlyn's end-of-file position is not in the text).
    [TestCase("[egress]\ndestinations = [\"a\",\n")]
    [TestCase("[egress]\nenabled = ")]
    [TestCase("[egress")]
    public void ErrorsAtTheEndOfTheTextAreLocatedOnOneLine(string text)
    {
        ConfigurationException error = Fail(text);

        Assert.That((error.Key, error.Message.Contains('\n', StringComparison.Ordinal), error.Line > 0), Is.EqualTo(((string?)null, false, true)), error.Message);
    }

    [Test]
    public void DuplicateKeyInAnEvervaultTableIsAnError() =>
        AssertError("[scaling]\na = 1\na = 2\n", 3, 1, "scaling.a", "defined twice (first at line 2)");

    // A new user's trial: "The maximum depth of 64 has been exceeded. Change TomlSerializerOptions.MaxDepth to allow
    // deeper nesting.", advice for a library's developers (Tomlyn's syntax parser gives no line or column for it).
    [TestCase(100_000)]
    [TestCase(1_000_000)]
    [TestCase(70)]
    public void ArraysNestedBeyondTomlynsLimitAreRefusedInTheseWords(int depth)
    {
        ConfigurationException error = Fail("[egress]\ndestinations = " + new string('[', depth) + new string(']', depth) + "\n");

        Assert.Multiple(() =>
        {
            Assert.That(error.Problem, Is.EqualTo("arrays and tables nested more than 64 levels deep"));
            Assert.That(error.Message, Does.StartWith(Source + ":"));
            Assert.That(error.Message, Does.Not.Contain("TomlSerializerOptions"));
        });
    }

    [Test]
    public void ArraysNestedWithinTomlynsLimitAreReadAsValues()
    {
        ConfigurationException error = Fail("[egress]\ndestinations = " + new string('[', 10) + new string(']', 10) + "\n");

        Assert.That(error.Problem, Is.EqualTo("expected a string, found an array"));
    }

    [Test]
    public void ValueErrorInAnEvervaultTableIsNotChecked()
    {
        // Evervault's tables are opaque to Egress: their contents are Evervault's business.
        EgressConfiguration configuration = EgressConfiguration.Parse("[scaling]\ndesired_replicas = \"two\"\nwhatever = 1\n", Source);

        Assert.That(configuration.Egress.Enabled, Is.False);
    }

    [TestCase("ports = [443]", "ports")]
    [TestCase("destinations = [\"b.example\"]", "destinations")]
    [TestCase("tls_server_name = \"require\"", "tls_server_name")]
    public void AnEgressKeyBelowAnEvervaultTableHeaderIsAnError(string line, string key)
    {
        // TOML gives the key to [attestation]: read as written, a.example would be allowed on every port.
        AssertError(
            $"[egress]\nenabled = true\ndestinations = [\"a.example\"]\n[attestation]\nPCR0 = \"00\"\n{line}\n", 6, 1, "attestation." + key,
            $"'{key}' is a key of [egress], but here it is in Evervault's [attestation] table, which Egress does not read (a key belongs to the last [table] header above it): move it under [egress]");
    }

    [Test]
    public void EvervaultsOwnKeysInItsTablesAndInlineTablesAreStillSkipped()
    {
        EgressConfiguration configuration = EgressConfiguration.Parse(
            "healthcheck = { path = \"/health\", port = 3000 }\ntrusted_headers = [\"X\"]\n[scaling]\ndesired_replicas = 2\nnested = { a = [1, { b = 2 }] }\n[egress]\nenabled = true\ndestinations = [\"a.example\"]\n", Source);

        Assert.That(configuration.Egress.Destinations, Has.Count.EqualTo(1));
    }

    private static void AssertError(string text, int line, int column, string key, string problem)
    {
        ConfigurationException error = Fail(text);

        Assert.Multiple(() =>
        {
            Assert.That(error.Message, Is.EqualTo($"{Source}:{line}:{column}: error: {problem} (key '{key}')"));
            Assert.That(error.SourceName, Is.EqualTo(Source));
            Assert.That(error.Line, Is.EqualTo(line));
            Assert.That(error.Column, Is.EqualTo(column));
            Assert.That(error.Key, Is.EqualTo(key));
            Assert.That(error.Problem, Is.EqualTo(problem));
        });
    }

    private static void AssertSyntaxError(string text, int line, int column, string problem)
    {
        ConfigurationException error = Fail(text);

        Assert.Multiple(() =>
        {
            Assert.That(error.Message, Is.EqualTo($"{Source}:{line}:{column}: error: {problem}"));
            Assert.That((error.Line, error.Column, error.Key), Is.EqualTo((line, column, (string?)null)));
            Assert.That(error.Problem, Is.EqualTo(problem));
        });
    }

    private static ConfigurationException Fail(string text) =>
        Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse(text, Source))!;
    /// <summary>A trial: a non-ASCII destination was told to use "the punycode (xn--) form" without being shown it.</summary>
    [Test]
    public void ANonAsciiDestinationIsToldItsPunycodeForm()
    {
        var configuration = EgressConfiguration.Parse("[egress]\nenabled = true\ndestinations = [\"bücher.allowed.test:443\"]\n", Source);
        var error = Assert.Throws<ConfigurationException>(() => configuration.CreatePolicy(configuration.CreateCache()))!;

        Assert.That(error.Message, Is.EqualTo($"{Source}:3:17: error: invalid destination \"bücher.allowed.test:443\": contains non-ASCII character 'ü'; use the punycode (xn--) form \"xn--bcher-kva.allowed.test:443\" (key 'egress.destinations')"));
    }

    /// <summary>From a new user's trial: a list of addresses said only its first invalid element, where destinations
    /// say every one.</summary>
    [Test]
    public void EveryInvalidElementOfAnAddressListIsSaidALineEach()
    {
        var upstreams = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse("[host]\ndns_upstreams = [\"8.8.8.8:99999\", \"dns.google\", \"198.18.0.53\", \"198.18.0.53:53\"]\n", Source));
        var networks = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse("[host]\ninternal_networks = [\"10.0.1.0/16\", \"10.0.0.0/16\", \"::/0\"]\n", Source));

        Assert.Multiple(() =>
        {
            Assert.That(upstreams!.Message.Split('\n'), Is.EqualTo(new[]
            {
                $"{Source}:2:18: error: invalid DNS upstream \"8.8.8.8:99999\": port must be a number between 1 and 65535 (key 'host.dns_upstreams')",
                $"{Source}:2:35: error: invalid DNS upstream \"dns.google\": not an IP address (key 'host.dns_upstreams')",
                $"{Source}:2:64: error: \"198.18.0.53:53\" is listed twice (key 'host.dns_upstreams')",
            }));
            Assert.That((upstreams.Line, upstreams.Column), Is.EqualTo((2, 18)), "the properties are the first error's");
            Assert.That(networks!.Message.Split('\n'), Has.Length.EqualTo(2));
        });
    }
}
