using System.Net;
using Egress.Configuration;
using Egress.Policy;
using Egress.Tunnel;

namespace Egress.Tests.Configuration;

public sealed class ConfiguredComponentsTests
{
    private const string Source = "enclave.toml";

    [Test]
    public void InvalidDestinationIsReportedAtItsArrayElement()
    {
        var configuration = EgressConfiguration.Parse("[egress]\ndestinations = [\n  \"api.example.com\",\n  \"a.*.com\",\n]\n", Source);
        Assert.That(DestinationRule.TryParse("a.*.com", out _, out string? problem), Is.False);

        var error = Assert.Throws<ConfigurationException>(() => configuration.CreatePolicy(configuration.CreateCache()));

        Assert.That(error!.Message, Is.EqualTo($"{Source}:4:3: error: {problem} (key 'egress.destinations')"));
        Assert.That((error.Line, error.Column, error.Key, error.Problem), Is.EqualTo((4, 3, "egress.destinations", problem)));
    }

    /// <summary>A library-consumer trial: with three invalid entries only the first was reported, so the file was fixed
    /// and re-read once per entry (EgressPolicy.Create listed them all).</summary>
    [Test]
    public void EveryInvalidDestinationIsReportedOnALineOfItsOwn()
    {
        var configuration = EgressConfiguration.Parse("[egress]\nenabled = true\ndestinations = [\n  \"a.*.com\",\n  \"ok.example\",\n  \"http://x.com\",\n  \"*.\",\n]\n", Source);
        string[] problems = [.. new[] { "a.*.com", "http://x.com", "*." }.Select(entry => DestinationRule.TryParse(entry, out _, out string? problem) ? null! : problem!)];

        var error = Assert.Throws<ConfigurationException>(() => configuration.CreatePolicy(configuration.CreateCache()))!;

        Assert.That(error.Message.Split('\n'), Is.EqualTo(new[]
        {
            $"{Source}:4:3: error: {problems[0]} (key 'egress.destinations')",
            $"{Source}:6:3: error: {problems[1]} (key 'egress.destinations')",
            $"{Source}:7:3: error: {problems[2]} (key 'egress.destinations')",
        }));
        Assert.That((error.Line, error.Column, error.Problem), Is.EqualTo((4, 3, problems[0])), "the first one's");
        Assert.That(() => configuration.GetPolicyDigest(), Throws.TypeOf<ConfigurationException>().With.Message.EqualTo(error.Message));
    }

    [Test]
    public void ABroadNetworkEntryIsWarnedAboutAtItsArrayElement()
    {
        var configuration = EgressConfiguration.Parse(
            "[egress]\nenabled = true\ndestinations = [\n  \"api.example.com\",\n  \"0.0.0.0/1\",\n  \"10.0.0.0/8\",\n  \"198.18.0.0/15\",\n]\n", Source);

        IReadOnlyList<string> warnings = configuration.GetWarnings();

        Assert.That(warnings, Has.Count.EqualTo(1), "10.0.0.0/8 names its range; the others open none");
        Assert.That(warnings[0], Does.StartWith($"{Source}:5:3: warning: destination \"0.0.0.0/1\" also allows internal ranges it does not name: loopback 127.0.0.0/8, "));
        Assert.That(warnings[0], Does.EndWith("(key 'egress.destinations')"));
    }

    /// <summary>From a new user's trial: "[::1]" and "169.254.169.254" loaded without a word, and through the first a
    /// tunnel client in the enclave read a service on the parent's own loopback. Still allowed (an entry that names an
    /// internal address is trusted), but said at load.</summary>
    [TestCase("127.0.0.1", "127.0.0.1", "loopback 127.0.0.0/8", Own)]
    [TestCase("127.0.0.1:22", "127.0.0.1", "loopback 127.0.0.0/8", Own)]
    [TestCase("[::1]", "::1", "loopback ::1", Own)]
    [TestCase("[::1]:9464", "::1", "loopback ::1", Own)]
    [TestCase("::ffff:127.0.0.1", "127.0.0.1", "loopback 127.0.0.0/8", Own)]
    [TestCase("0.0.0.0:22", "0.0.0.0", "unspecified 0.0.0.0/8", Own)] // Linux connects it to the machine itself
    [TestCase("[::]", "::", "unspecified ::", Own)]
    [TestCase("127.0.0.0/8", "127.1.2.3", "loopback 127.0.0.0/8", Nothing)] // egress-host refuses its own addresses no entry names one by one
    [TestCase("127.0.0.0/30:22", "127.0.0.1", "loopback 127.0.0.0/8", Nothing)]
    [TestCase("169.254.169.254", "169.254.169.254", "link-local 169.254.0.0/16 (instance metadata)", Dialled)]
    [TestCase("169.254.169.254:80", "169.254.169.254", "link-local 169.254.0.0/16 (instance metadata)", Dialled)]
    [TestCase("169.254.0.0/16", "169.254.169.254", "link-local 169.254.0.0/16 (instance metadata)", Dialled)]
    [TestCase("fd00:ec2::254", "fd00:ec2::254", "instance metadata fd00:ec2::254 (unique local fc00::/7)", Dialled)]
    [TestCase("fe80::1", "fe80::1", "link-local fe80::/10", Dialled)]
    [TestCase("64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe", "link-local 169.254.0.0/16 (instance metadata) via NAT64 64:ff9b::/96", Dialled)]
    [TestCase("64:ff9b::7f00:0001", "64:ff9b::7f00:1", "loopback 127.0.0.0/8 via NAT64 64:ff9b::/96", "the parent dials it for the enclave because this entry names it;")] // through a translator, not the parent's lo
    [TestCase("2002:a9fe:a9fe::/48", "2002:a9fe:a9fe::1", "link-local 169.254.0.0/16 (instance metadata) via 6to4 2002::/16", Dialled)]
    public void AnEntryInsideLoopbackOrLinkLocalIsWarnedAbout(string entry, string address, string range, string says)
    {
        var configuration = EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\n  \"api.example.com\",\n  \"{entry}\",\n]\n", Source);
        var policy = configuration.CreatePolicy(configuration.CreateCache());

        IReadOnlyList<string> warnings = configuration.GetWarnings();

        Assert.That(warnings, Has.Count.EqualTo(1));
        Assert.That(warnings[0], Does.StartWith($"{Source}:5:3: warning: destination \"{entry}\" is {range}, {says}").And.EndWith("; remove it unless that is meant (key 'egress.destinations')"));
        Assert.That(policy.CheckAddress(IPAddress.Parse(address)).IsAllowed, Is.True, "warned, still allowed by the enclave's policy: the entry is trusted");
    }

    private const string Own = "the parent's own services: an application in the enclave never reaches them through it";
    private const string Nothing = "which allows nothing: an application's connections to the enclave's own loopback stay in the enclave";
    private const string Dialled = "the parent dials it for the enclave because this entry names it (169.254.169.254 and fd00:ec2::254 are the instance metadata service";

    [TestCase("10.0.0.0/8")]
    [TestCase("10.1.2.3:5432")]
    [TestCase("198.18.0.1")]
    [TestCase("fd00::53")]
    [TestCase("169.254.0.0/15")] // broader: the warning that names what it opens instead
    [TestCase("126.0.0.0/7")]
    [TestCase("2002::/16")]
    public void AnEntryOutsideLoopbackAndLinkLocalIsNotWarnedAboutAsOne(string entry) =>
        Assert.That(
            EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\"{entry}\"]\n", Source).GetWarnings(),
            Has.None.Contains(" is loopback").And.None.Contains(" is link-local").And.None.Contains("the parent dials it"));

    /// <summary>A trial: a parent's file with <c>[[host.enclaves]]</c> and a full <c>[egress]</c> list, which decides no
    /// stream, passed <c>--check-config</c> without a word.</summary>
    [Test]
    public void DestinationsOfAFileWithEnclaveEntriesAreWarnedAboutAsUnused()
    {
        const string Mapped = "[egress]\nenabled = true\ndestinations = [\"api.example.com\", \"*.example.org:443\"]\n\n[[host.enclaves]]\ncid = 16\nconfig = \"a.toml\"\n";

        IReadOnlyList<string> warnings = EgressConfiguration.Parse(Mapped, Source).GetWarnings();
        IReadOnlyList<string> withoutList = EgressConfiguration.Parse("[[host.enclaves]]\ncid = 16\nconfig = \"a.toml\"\n", Source).GetWarnings();
        IReadOnlyList<string> withoutMap = EgressConfiguration.Parse("[egress]\nenabled = true\ndestinations = [\"api.example.com\"]\n", Source).GetWarnings();

        Assert.Multiple(() =>
        {
            Assert.That(warnings, Is.EqualTo(new[]
            {
                $"{Source}:3:16: warning: the 2 destinations of this file's [egress] decide no connection: with [[host.enclaves]] (1 entry) egress-host decides each enclave's streams by its entry's config file; move them there, or remove them (key 'egress.destinations')",
            }));
            Assert.That(withoutList, Is.Empty);
            Assert.That(withoutMap, Is.Empty);
        });
    }

    /// <summary>From a new user's trial: a copied Evervault file (no egress.ports) allowed every port of its entries,
    /// where Evervault allows 443 only, without a word.</summary>
    [Test]
    public void AnEvervaultFileWithoutPortsIsWarnedThatEgressAllowsEveryPort()
    {
        const string file = "version = 1\nname = \"payments\"\nuuid = \"enclave_1\"\napp_uuid = \"app_1\"\n[egress]\nenabled = true\ndestinations = [\"*.example.com:443\", \"api.stripe.com\"]\n[signing]\ncert = \"cert.pem\"\n";
        var configuration = EgressConfiguration.Parse(file, Source);

        Assert.That(configuration.GetWarnings(), Is.EqualTo(new[]
        {
            $"{Source}:7:38: warning: this file is an Evervault enclave's (it has Evervault's 'uuid'), and without egress.ports Evervault allows egress on port 443 only, "
                + "where Egress allows every port of an entry that names none, such as \"api.stripe.com\": add ports = [443] under [egress] for Evervault's behaviour, "
                + "or give each entry its ports (key 'egress.ports')",
        }));
        Assert.That(configuration.CreatePolicy(configuration.CreateCache()).CheckAddress(IPAddress.Loopback).IsAllowed, Is.False, "a warning, the policy as before");
    }

    [TestCase("app_uuid = \"app_1\"\n[egress]\nenabled = true\nports = [443]\ndestinations = [\"api.stripe.com\"]\n")] // Evervault's behaviour asked for
    [TestCase("team_uuid = \"team_1\"\n[egress]\nenabled = true\ndestinations = [\"api.stripe.com:443\", \"*.example.com:8443\"]\n")] // every entry names its ports
    [TestCase("[egress]\nenabled = true\ndestinations = [\"api.stripe.com\"]\n")] // Egress's own file
    [TestCase("version = 1\nname = \"demo\"\ndebug = false\n[egress]\nenabled = true\ndestinations = [\"api.stripe.com\"]\n")] // Evervault's format, not a copy of an enclave's file
    [TestCase("[egress]\nenabled = true\ndestinations = [\"api.stripe.com\"]\n[tunnel]\nenclave_endpoint = \"vsock://3:4433\"\n")]
    public void AFileThatIsNotEvervaultsOrSaysItsPortsIsNotWarnedAboutPorts(string file) =>
        Assert.That(EgressConfiguration.Parse(file, Source).GetWarnings(), Is.Empty);

    /// <summary>From a new user's trial: repeats and a bare entry beside narrower ones loaded without a word, and the
    /// bare one silently opened every port of a name the others limited to 443.</summary>
    [Test]
    public void AnEntryAnotherOneMakesMootIsWarnedAbout()
    {
        var configuration = EgressConfiguration.Parse(
            "[egress]\nenabled = true\ndestinations = [\n  \"api.stripe.com:443\",\n  \"API.Stripe.com.:443\",\n  \"api.stripe.com\",\n  \"10.0.0.0/8:5432\",\n  \"10.0.0.0/8:5432,6379\",\n  \"*.example.com:443\",\n  \"example.com:80\",\n]\n",
            Source);

        Assert.That(configuration.GetWarnings(), Is.EqualTo(new[]
        {
            $"{Source}:4:3: warning: destination \"api.stripe.com:443\" adds nothing: \"api.stripe.com\" ({Source}:6:3) allows the same destination on every port (the entries of one destination allow the union of their ports); remove one, or give that one only the ports meant (key 'egress.destinations')",
            $"{Source}:5:3: warning: destination \"API.Stripe.com.:443\" adds nothing: \"api.stripe.com\" ({Source}:6:3) allows the same destination on every port (the entries of one destination allow the union of their ports); remove one, or give that one only the ports meant (key 'egress.destinations')",
            $"{Source}:7:3: warning: destination \"10.0.0.0/8:5432\" adds nothing: \"10.0.0.0/8:5432,6379\" ({Source}:8:3) allows the same destination on ports 5432,6379 (the entries of one destination allow the union of their ports); remove one, or give that one only the ports meant (key 'egress.destinations')",
        }));
    }

    /// <summary>From a new user's trial: every entry was compared with every other one, so loading 40,000 destinations
    /// took 22–33 s (past bootstrap.sh's 15 s start timeout) and 100,000 about 4.5 minutes; an entry is now compared with
    /// those of its own destination (`egress-enclave --config FILE --check-config` on 100,000 names: 2.1 s). What is
    /// warned about among many entries is unchanged.</summary>
    [Test]
    public void AHundredThousandDestinationsAreCheckedForRepeatsAmongThemselvesOnly()
    {
        var text = new System.Text.StringBuilder("[egress]\nenabled = true\ndestinations = [\n");
        for (int i = 0; i < 100_000; i++)
        {
            text.Append("  \"h").Append(i).Append(".example.com:443\",\n");
        }

        text.Append("  \"h7.example.com:443\",\n  \"h99999.example.com\",\n]\n");
        var configuration = EgressConfiguration.Parse(text.ToString(), Source);

        // A guard against the quadratic comparison coming back (about 4.5 minutes before; about a second now), not a
        // speed target: those live in benchmarks/.
        var warnings = Task.Run(configuration.GetWarnings);
        Assert.That(warnings.Wait(TimeSpan.FromMinutes(1)), Is.True, "the checks of 100,000 entries did not end within a minute");
        Assert.That(warnings.Result, Is.EqualTo(new[]
        {
            $"{Source}:100003:3: warning: destination \"h99999.example.com:443\" adds nothing: \"h99999.example.com\" ({Source}:100005:3) allows the same destination on every port (the entries of one destination allow the union of their ports); remove one, or give that one only the ports meant (key 'egress.destinations')",
            $"{Source}:100004:3: warning: destination \"h7.example.com:443\" repeats \"h7.example.com:443\" ({Source}:11:3), which allows the same on port 443; remove one (key 'egress.destinations')",
        }));
    }

    /// <summary>From a new user's trial: a listen address on every interface was accepted without a word (and, from a
    /// review, one of another interface beside a loopback one).</summary>
    [Test]
    public void AListenAddressOtherThanLoopbackIsWarnedAboutAtItsElement()
    {
        var configuration = EgressConfiguration.Parse("[enclave]\nproxy_listen = [\"127.0.0.1:4444\", \"0.0.0.0:4445\"]\ndns_listen = [\"127.0.0.1:53\", \"[::]:53\", \"198.18.0.5:53\"]\n", Source);

        Assert.That(configuration.GetWarnings(), Is.EqualTo(new[]
        {
            $"{Source}:2:35: warning: 0.0.0.0:4445 listens on every interface: a Nitro enclave has lo only, but where this runs beside other interfaces (a container, a trial on a host) whoever reaches them can use the proxy as this enclave's; list loopback addresses (\"127.0.0.1:4444\") (key 'enclave.proxy_listen')",
            $"{Source}:3:31: warning: [::]:53 listens on every interface: a Nitro enclave has lo only, but where this runs beside other interfaces (a container, a trial on a host) whoever reaches them can use the DNS forwarder as this enclave's; list loopback addresses (\"127.0.0.1:53\") (key 'enclave.dns_listen')",
            $"{Source}:3:42: warning: 198.18.0.5:53 listens on an address other than loopback: a Nitro enclave has lo only, but where this runs beside other interfaces (a container, a trial on a host) whoever reaches them can use the DNS forwarder as this enclave's; list loopback addresses (\"127.0.0.1:53\") (key 'enclave.dns_listen')",
        }));
        Assert.That(EgressConfiguration.Default.GetWarnings(), Has.None.Contains("listens on"));
    }

    [Test]
    public void AnIPv4MappedAddressIsTheSameDestinationAsItsIPv4Address()
    {
        var configuration = EgressConfiguration.Parse("[egress]\nenabled = true\ndestinations = [\"198.18.0.10\", \"[::ffff:198.18.0.10]:443\"]\n", Source);
        Assert.That(configuration.CreatePolicy(configuration.CreateCache()).CheckAddress(IPAddress.Parse("198.18.0.10")).IsAllowed, Is.True);

        Assert.That(configuration.GetWarnings(), Is.EqualTo(new[]
        {
            $"{Source}:3:32: warning: destination \"[::ffff:198.18.0.10]:443\" adds nothing: \"198.18.0.10\" ({Source}:3:17) allows the same destination on every port (the entries of one destination allow the union of their ports); remove one, or give that one only the ports meant (key 'egress.destinations')",
        }));
    }

    [Test]
    public void ARepeatedEntryIsWarnedAboutOnceAtTheRepeat()
    {
        var configuration = EgressConfiguration.Parse("[egress]\nenabled = true\nports = [443]\ndestinations = [\"api.stripe.com\", \"api.stripe.com:443\", \"*.example.com:80,443\", \"*.example.com:443,80\"]\n", Source);

        Assert.That(configuration.GetWarnings(), Is.EqualTo(new[]
        {
            $"{Source}:4:35: warning: destination \"api.stripe.com:443\" repeats \"api.stripe.com\" ({Source}:4:17), which allows the same on port 443; remove one (key 'egress.destinations')",
            $"{Source}:4:81: warning: destination \"*.example.com:443,80\" repeats \"*.example.com:80,443\" ({Source}:4:57), which allows the same on ports 80,443; remove one (key 'egress.destinations')",
        }));
    }

    // New-user trial (6 December): a port repeated within one entry was accepted without a word, while a repeat across
    // entries was warned about.
    [TestCase("api.stripe.com:443,443", "port 443")]
    [TestCase("api.stripe.com:8000-8100,8080", "port 8080")]
    [TestCase("api.stripe.com:8000-8100,8050-8060", "ports 8050-8060")]
    [TestCase("api.stripe.com:8080,8000-8100", "port 8080")] // a review: the earlier item is the one made moot
    public void APortRepeatedWithinOneEntryIsWarnedAbout(string entry, string repeated)
    {
        var configuration = EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\"{entry}\"]\n", Source);

        Assert.That(configuration.GetWarnings(), Is.EqualTo(new[]
        {
            $"{Source}:3:17: warning: destination \"{entry}\" names {repeated} more than once; remove the repeat, or write the port meant (key 'egress.destinations')",
        }));
    }

    [TestCase("api.stripe.com:443,8443")]
    [TestCase("api.stripe.com:8443,443-445")]
    public void PortsThatEachAddSomethingAreNotARepeat(string entry) =>
        Assert.That(EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\"{entry}\"]\n", Source).GetWarnings(), Is.Empty);

    [TestCase("\"api.stripe.com:443\", \"api.stripe.com:8443\"")] // each adds a port
    [TestCase("\"api.stripe.com:1-100\", \"api.stripe.com:50-200\"")]
    [TestCase("\"api.stripe.com\", \"*.stripe.com:443\"")] // a name and a wildcard: another destination
    [TestCase("\"10.0.0.0/8:5432\", \"10.0.0.0/16:5432\"")] // another network: only the same one is compared
    [TestCase("\"10.0.0.0/8\", \"10.1.2.3:5432\"")] // an address inside a network still names itself (egress-host's own addresses)
    public void EntriesThatEachAllowSomethingAreNotWarnedAbout(string destinations) =>
        Assert.That(EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [{destinations}]\n", Source).GetWarnings(), Is.Empty);

    /// <summary>From an operator's trial: "2001:db8::1:443" was silently the address 2001:db8::1:443, not port 443 of
    /// 2001:db8::1. It is a valid address, so it is warned about, naming both readings as written, not refused.</summary>
    [TestCase("2001:db8::1:443", "2001:db8::1:443", 443, "2001:db8::1")]
    [TestCase("::1:8080", "::1:8080", 8080, "::1")]
    [TestCase("2001:DB8:0::1:8443", "2001:DB8:0::1:8443", 8443, "2001:DB8:0::1")]
    public void AnIPv6AddressWhoseLastGroupReadsAsAPortIsWarnedAbout(string entry, string address, int port, string head)
    {
        var configuration = EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\n  \"api.example.com\",\n  \"{entry}\",\n]\n", Source);
        Assert.That(configuration.CreatePolicy(configuration.CreateCache()).CheckAddress(IPAddress.Parse(address)).IsAllowed, Is.True, "a valid address entry");

        Assert.That(configuration.GetWarnings(), Is.EqualTo(new[]
        {
            $"{Source}:5:3: warning: destination \"{entry}\" is the address {address}; for port {port} of {head} write \"[{head}]:{port}\" (key 'egress.destinations')",
        }));
    }

    [TestCase("2001:db8::1")]
    [TestCase("fd00::53")]
    [TestCase("2001:db8::443")] // "2001:db8:" is not an address
    [TestCase("2001:db8::1:0443")] // a leading zero: written as a group
    [TestCase("2001:db8::1:70000")] // not a port (and not a group either: the entry is invalid, reported by the policy)
    [TestCase("2001:db8::1:ab")]
    [TestCase("2001:db8:0:0:0:0:1:443")] // no "::"
    [TestCase("[2001:db8::1:443]")]
    [TestCase("[2001:db8::1]:443")]
    [TestCase("2001:db8::/32:443")]
    [TestCase("::ffff:192.0.2.1")]
    public void AnOrdinaryIPv6EntryIsNotWarnedAbout(string entry) =>
        Assert.That(EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\"{entry}\"]\n", Source).GetWarnings(), Is.Empty);

    // Before, both hosts started with only "(egress enabled, 0 destinations)": an Evervault file with an empty list
    // (allow-all there) silently denied everything.
    [TestCase("[egress]\nenabled = true\ndestinations = []\n", "3:16", "egress.destinations", "egress.enabled = true with no destinations: every connection and every DNS name is denied (an Evervault enclave allows everything with an empty list; Egress fails closed: write destinations = [\"*\"] to allow everything)")]
    [TestCase("[egress]\nenabled = true\n", "2:11", "egress.destinations", "egress.enabled = true with no destinations: every connection and every DNS name is denied (an Evervault enclave allows everything with an empty list; Egress fails closed: write destinations = [\"*\"] to allow everything)")]
    [TestCase("[egress]\nenabled = false\ndestinations = [\"*\", \"api.example.com\"]\n", "2:11", "egress.enabled", "egress.enabled = false: every connection and every DNS name is denied, and the 2 destinations listed are not used")]
    // A trial: a file that never sets enabled was told "egress.enabled = false" at its destinations line.
    [TestCase("[egress]\ndestinations = [\"api.example.com\"]\n", "2:16", "egress.enabled", "egress.enabled is not set and defaults to false: every connection and every DNS name is denied, and the 1 destination listed is not used; add enabled = true under [egress]")]
    public void APolicyThatDeniesEverythingByLikelyMistakeIsWarnedAbout(string file, string at, string key, string caution)
    {
        var configuration = EgressConfiguration.Parse(file, Source);

        Assert.That(configuration.GetWarnings(), Is.EqualTo(new[] { $"{Source}:{at}: warning: {caution} (key '{key}')" }));
    }

    [TestCase("[host]\ndns_timeout_ms = 4000\n[enclave]\ndns_query_timeout_ms = 1500\n", "2:18: warning: enclave.dns_query_timeout_ms (1500) is not greater than host.dns_timeout_ms (4000): the enclave answers SERVFAIL before the parent has heard from its upstreams, which it then asks in vain (key 'host.dns_timeout_ms')")]
    [TestCase("[enclave]\ndns_query_timeout_ms = 2000\n", "2:24: warning: enclave.dns_query_timeout_ms (2000) is not greater than host.dns_timeout_ms (2000): the enclave answers SERVFAIL before the parent has heard from its upstreams, which it then asks in vain (key 'enclave.dns_query_timeout_ms')")]
    public void DnsTimeoutsOutOfOrderAreWarnedAboutNotRefused(string file, string warning) =>
        Assert.That(EgressConfiguration.Parse(file, Source).GetWarnings(), Is.EqualTo(new[] { $"{Source}:{warning}" }));

    [TestCase("[egress]\nenabled = true\ndestinations = [\"api.example.com\"]\n")]
    [TestCase("[egress]\nenabled = false\n")]
    [TestCase("[egress]\nenabled = true\nmode = \"report\"\n")] // report mode's usual start: allows and logs everything
    [TestCase("")]
    public void APolicyAsMeantGetsNoWarning(string file) =>
        Assert.That(EgressConfiguration.Parse(file, Source).GetWarnings(), Is.Empty);

    // Before, "*.com" was taken without a word.
    [Test]
    public void AWildcardOverAWholeTopLevelDomainIsWarnedAboutAtItsArrayElement()
    {
        var configuration = EgressConfiguration.Parse(
            "[egress]\nenabled = true\ndestinations = [\n  \"*.example.com\",\n  \"*.com:443\",\n  \"*.co.uk\",\n]\n", Source);

        Assert.That(configuration.GetWarnings(), Is.EqualTo(new[]
        {
            $"{Source}:5:3: warning: destination \"*.com:443\" allows every name under the top-level domain \"com\", which anyone can register a name in; list the domains meant (\"*.example.com\") (key 'egress.destinations')",
            $"{Source}:6:3: warning: destination \"*.co.uk\" allows every name under \"co.uk\", a public suffix (Public Suffix List, 2023-02-09): anyone can register or create names there; list the names or domains meant (\"name.co.uk\", \"*.name.co.uk\") (key 'egress.destinations')",
        }));
    }

    // Before, only a top-level domain was warned about: "*.s3.amazonaws.com" (any bucket, an attacker's too), "*.co.uk"
    // and "*.github.io" were taken without a word, and so was "*.amazonaws.com", which holds such suffixes.
    [TestCase("*.s3.amazonaws.com", "\"s3.amazonaws.com\", a public suffix")]
    [TestCase("*.github.io:443", "\"github.io\", a public suffix")]
    [TestCase("*.CO.UK.", "\"co.uk\", a public suffix")]
    [TestCase("*.ward.kobe.jp", "\"ward.kobe.jp\", a public suffix")] // by the rule *.kobe.jp
    [TestCase("*.xn--55qx5d.cn", "\"xn--55qx5d.cn\", a public suffix")] // the list writes it as 公司.cn
    [TestCase("*.nagoya.jp", "\"nagoya.jp\", which holds public suffixes")] // the rule *.nagoya.jp
    // From a review: the list of 2023-02-09 names s3.REGION.amazonaws.com for seven regions only, so the most common
    // bucket wildcards went unwarned; Egress's own additions cover every region, and other shared storage.
    [TestCase("*.s3.us-east-1.amazonaws.com", "\"s3.us-east-1.amazonaws.com\", a public suffix (Egress's list of shared storage and API endpoints)")]
    [TestCase("*.execute-api.eu-west-1.amazonaws.com", "\"execute-api.eu-west-1.amazonaws.com\", a public suffix (Egress's list")]
    [TestCase("*.lambda-url.eu-west-1.on.aws", "\"lambda-url.eu-west-1.on.aws\", a public suffix (Egress's list")]
    [TestCase("*.storage.googleapis.com", "\"storage.googleapis.com\", a public suffix (Egress's list")]
    [TestCase("*.windows.net", "\"windows.net\", which holds public suffixes where anyone can create names (dfs.core.windows.net, blob.core.windows.net, file.core.windows.net and 3 more; Egress's list of shared storage and API endpoints)")]
    [TestCase("*.z13.web.core.windows.net", "\"z13.web.core.windows.net\", a public suffix (Egress's list")]
    [TestCase("*.s3.cn-northwest-1.amazonaws.com.cn", "\"s3.cn-northwest-1.amazonaws.com.cn\", a public suffix (Egress's list")]
    [TestCase("*.s3-object-lambda.us-east-1.amazonaws.com", "\"s3-object-lambda.us-east-1.amazonaws.com\", a public suffix (Egress's list")]
    [TestCase("*.s3.eu-central-1.amazonaws.com", "\"s3.eu-central-1.amazonaws.com\", a public suffix (Public Suffix List, 2023-02-09)")] // the list's word is enough
    public void AWildcardOverAPublicSuffixIsWarnedAbout(string entry, string expected) =>
        Assert.That(
            EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\"{entry}\"]\n", Source).GetWarnings(),
            Has.Exactly(1).Contains($"allows every name under {expected}"));

    [Test]
    public void AWildcardOverADomainThatHoldsPublicSuffixesNamesTheShortestAndCountsTheRest()
    {
        var warnings = EgressConfiguration.Parse("[egress]\nenabled = true\ndestinations = [\"*.amazonaws.com:443\"]\n", Source).GetWarnings();

        Assert.That(warnings, Has.Count.EqualTo(1));
        Assert.That(warnings[0], Does.Match(
            $"^{System.Text.RegularExpressions.Regex.Escape(Source)}:3:17: warning: destination \"\\*\\.amazonaws\\.com:443\" allows every name under \"amazonaws\\.com\", which holds public suffixes where anyone can create names \\(s3\\.amazonaws\\.com, [^,]+, [^,]+ and [0-9]+ more; Public Suffix List, 2023-02-09, and Egress's list of shared storage and API endpoints\\); list the names meant \\(key 'egress\\.destinations'\\)$"));
    }

    [TestCase("*.my-bucket.s3.us-east-1.amazonaws.com")]
    [TestCase("*.sts.amazonaws.com")] // a review: was said to hold S3's suffixes
    [TestCase("*.rds.amazonaws.com")]
    [TestCase("*.example.co.uk")]
    [TestCase("*.my-bucket.s3.amazonaws.com")]
    [TestCase("*.example.github.io")]
    [TestCase("*.www.ck")] // the exception !www.ck: a registered name, not a suffix
    [TestCase("*.city.kobe.jp")] // the exception !city.kobe.jp beside *.kobe.jp
    [TestCase("my-bucket.s3.amazonaws.com")]
    [TestCase("co.uk")] // the name itself, not the names under it
    public void AWildcardBelowAPublicSuffixOrAnExactNameGetsNoPublicSuffixWarning(string entry) =>
        Assert.That(EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\"{entry}\"]\n", Source).GetWarnings(), Is.Empty);

    // A trial: "*.test" and "*.internal" were said to open a top-level domain "anyone can register a name in".
    [TestCase("test")]
    [TestCase("localhost")]
    [TestCase("internal")]
    [TestCase("LOCAL")]
    public void AWildcardOverASpecialUseTopLevelDomainGetsNoWarning(string domain) =>
        Assert.That(EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\"*.{domain}\"]\n", Source).GetWarnings(), Is.Empty);

    // A review: reverse zones under arpa are delegated to whoever holds the addresses, so "*.arpa" is still warned about.
    [Test]
    public void AWildcardOverArpaIsStillWarnedAbout() =>
        Assert.That(EgressConfiguration.Parse("[egress]\nenabled = true\ndestinations = [\"*.arpa\"]\n", Source).GetWarnings(), Has.One.Contains("top-level domain \"arpa\""));

    // A new user's trial: "*.in-addr.arpa" was said to be where "anyone can register or create names", which is not how
    // reverse zones are delegated; the warning stays (an address block's holder answers for its part) with their words.
    [TestCase("in-addr.arpa", "*.2.0.192.in-addr.arpa")]
    [TestCase("ip6.arpa", "*.2.0.192.in-addr.arpa")]
    public void AWildcardOverTheReverseDnsTreeIsWarnedAboutInItsOwnWords(string domain, string example)
    {
        var warnings = EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\"*.{domain}\"]\n", Source).GetWarnings();

        Assert.That(warnings, Has.One.Contains($"allows every name under \"{domain}\", the reverse-DNS tree (Public Suffix List, 2023-02-09): whoever holds an address block")
            .And.Contains($"list the reverse zones meant (\"{example}\" for 192.0.2.0/24)")
            .And.Not.Contains("anyone can register"));
    }

    // A new user's trial: "vsock://host:4433" was taken without a word and resolves to CID 2, the hypervisor's, where the
    // parent a Nitro enclave reaches is CID 3.
    [TestCase("vsock://host:4433", "4433")]
    [TestCase("vsock://2:5000", "5000")]
    public void AnEnclaveEndpointAtTheHypervisorsCidIsWarnedAboutAtItsKey(string endpoint, string port)
    {
        var configuration = EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\"api.example.com\"]\n[tunnel]\nenclave_endpoint = \"{endpoint}\"\n", Source);

        Assert.That(configuration.GetWarnings(), Is.EqualTo(new[]
        {
            $"{Source}:5:20: warning: \"{endpoint}\" is CID 2 (VMADDR_CID_HOST, the hypervisor), not the parent instance: a Nitro enclave reaches its parent at CID 3 (\"vsock://parent:{port}\" or \"vsock://3:{port}\") (key 'tunnel.enclave_endpoint')",
        }));
    }

    [TestCase("vsock://parent:4433")]
    [TestCase("vsock://3:4433")]
    [TestCase("unix:/run/egress/tunnel.sock")]
    public void AnEnclaveEndpointAtTheParentGetsNoWarning(string endpoint) =>
        Assert.That(EgressConfiguration.Parse($"[egress]\nenabled = true\ndestinations = [\"api.example.com\"]\n[tunnel]\nenclave_endpoint = \"{endpoint}\"\n", Source).GetWarnings(), Is.Empty);

    [Test]
    public void TheSampleConfigurationHasNoWarnings()
    {
        var configuration = EgressConfiguration.Load(Path.Combine(TestContext.CurrentContext.TestDirectory, "..", "..", "..", "..", "..", "samples", "enclave.toml"));

        Assert.That(configuration.GetWarnings(), Is.Empty);
    }

    [Test]
    public void RelayOptionsTakeTheRelaySection()
    {
        var configured = EgressConfiguration.Parse("[relay]\nidle_timeout_seconds = 120\nsplice = false\n", Source).CreateRelayOptions();
        var defaults = EgressConfiguration.Parse(string.Empty, Source).CreateRelayOptions();

        Assert.Multiple(() =>
        {
            Assert.That((configured.IdleTimeout, configured.UseSplice), Is.EqualTo(((TimeSpan?)TimeSpan.FromMinutes(2), false)));
            Assert.That((defaults.IdleTimeout, defaults.UseSplice), Is.EqualTo(((TimeSpan?)TimeSpan.FromHours(1), true)));
            Assert.That(configured.TimeProvider, Is.SameAs(TimeProvider.System));
        });
    }

    [Test]
    public void ValidDestinationsMakeThePolicy()
    {
        var configuration = EgressConfiguration.Parse("[egress]\nenabled = true\ndestinations = [\"api.example.com\", \"10.1.2.3\"]\n", Source);

        EgressPolicy policy = configuration.CreatePolicy(configuration.CreateCache());

        Assert.That(policy.IsEnabled, Is.True);
        Assert.That(policy.Destinations.Select(d => d.Text), Is.EqualTo(new[] { "api.example.com", "10.1.2.3" }));
        Assert.That(policy.CheckAddress(IPAddress.Parse("10.1.2.3")).Reason, Is.EqualTo(DecisionReason.StaticEntry));
    }

    [Test]
    public void EvervaultsPortsBecomeThePortsOfEveryEntryWithoutItsOwnAndTheDigestCoversThem()
    {
        const string Entries = "[egress]\nenabled = true\ndestinations = [\"api.example.com\", \"smtp.example.com:587\", \"10.1.2.3\"]\n";
        var withPorts = EgressConfiguration.Parse(Entries + "ports = [443, \"8443\"]\n", Source);
        var without = EgressConfiguration.Parse(Entries, Source);

        EgressPolicy policy = withPorts.CreatePolicy(withPorts.CreateCache());

        Assert.Multiple(() =>
        {
            Assert.That(policy.Destinations.Select(d => d.Text), Is.EqualTo(new[] { "api.example.com:443,8443", "smtp.example.com:587", "10.1.2.3:443,8443" }));
            Assert.That(policy.CheckDestination(new IPEndPoint(IPAddress.Parse("10.1.2.3"), 8443)).IsAllowed, Is.True);
            Assert.That(policy.CheckDestination(new IPEndPoint(IPAddress.Parse("10.1.2.3"), 22)).Reason, Is.EqualTo(DecisionReason.PortNotAllowed));
            Assert.That(without.CreatePolicy(without.CreateCache()).CheckDestination(new IPEndPoint(IPAddress.Parse("10.1.2.3"), 22)).IsAllowed, Is.True, "without the key: every port, as before");
            Assert.That(withPorts.GetPolicyDigest().ToString(), Is.Not.EqualTo(without.GetPolicyDigest().ToString()));
        });
    }

    [Test]
    public void CacheTakesTheDnsSection()
    {
        var configuration = EgressConfiguration.Parse("[dns]\nttl_floor_seconds = 7\ngrace_seconds = 9\ncache_max_entries = 11\n", Source);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        AllowlistCache cache = configuration.CreateCache(time);
        var policy = EgressPolicy.Create(true, ["api.example.com"], cache);
        var address = IPAddress.Parse("198.51.100.1");

        policy.Learn("api.example.com", address, TimeSpan.FromSeconds(1));
        time.Advance(TimeSpan.FromSeconds(6));
        PolicyDecision live = policy.CheckAddress(address);
        time.Advance(TimeSpan.FromSeconds(2));
        PolicyDecision grace = policy.CheckAddress(address);
        time.Advance(TimeSpan.FromSeconds(9));
        PolicyDecision expired = policy.CheckAddress(address);

        Assert.That((live.Reason, grace.Reason, expired.Reason), Is.EqualTo((DecisionReason.Learned, DecisionReason.LearnedInGrace, DecisionReason.LearnedExpired)), "TTL floor 7 s, then 9 s grace");
    }

    [TestCase(TunnelSide.Enclave, "vsock://3:4433")]
    [TestCase(TunnelSide.Host, "vsock://any:4433")]
    public void DefaultTunnelEndpoints(TunnelSide side, string expected) =>
        Assert.That(EgressConfiguration.Default.GetTunnelEndpoint(side).ToString(), Is.EqualTo(expected));

    /// <summary>From a library-consumer trial: a side that is neither gave the host's endpoint.</summary>
    [Test]
    public void AnUndefinedTunnelSideIsAnArgumentError() =>
        Assert.That(() => EgressConfiguration.Default.GetTunnelEndpoint((TunnelSide)5), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("side"));

    [TestCase(TunnelSide.Enclave, "unix:/run/enclave.sock")]
    [TestCase(TunnelSide.Host, "unix:/run/host.sock")]
    public void ConfiguredTunnelEndpointPerSide(TunnelSide side, string expected)
    {
        var configuration = EgressConfiguration.Parse("[tunnel]\nenclave_endpoint = \"unix:/run/enclave.sock\"\nhost_endpoint = \"unix:/run/host.sock\"\n", Source);

        Assert.That(configuration.GetTunnelEndpoint(side).ToString(), Is.EqualTo(expected));
    }

    [TestCase(TunnelSide.Enclave, "enclave_endpoint", "vsock://3")]
    [TestCase(TunnelSide.Host, "host_endpoint", "unix:relative.sock")]
    public void InvalidTunnelEndpointInTheFileIsReportedAtItsValue(TunnelSide side, string key, string value)
    {
        var configuration = EgressConfiguration.Parse($"# tunnel\n[tunnel]\n{key} = \"{value}\"\n", Source);
        Assert.That(TunnelEndpoint.TryParse(value, out _, out string? problem), Is.False);

        var error = Assert.Throws<ConfigurationException>(() => configuration.GetTunnelEndpoint(side));

        Assert.That((error!.Line, error.Column, error.Key, error.Problem), Is.EqualTo((3, key.Length + 4, $"tunnel.{key}", problem)));
        Assert.That(error.Message, Does.StartWith($"{Source}:3:{key.Length + 4}: error: invalid tunnel endpoint '{value}'"));
    }

    [TestCase("vsock://any:4433")]
    [TestCase("vsock://3:any")]
    public void TheEnclaveCannotDialAnyAddressButTheHostMayListenOnIt(string value)
    {
        var configuration = EgressConfiguration.Parse($"[tunnel]\nenclave_endpoint = \"{value}\"\nhost_endpoint = \"{value}\"\n", Source);

        var error = Assert.Throws<ConfigurationException>(() => configuration.GetTunnelEndpoint(TunnelSide.Enclave));

        Assert.That(error!.Message, Does.StartWith($"{Source}:2:20: error: the enclave dials this endpoint, and \"any\" is only for listening (host_endpoint); write the parent's CID and port, e.g. \"vsock://3:4433\""));
        Assert.That(configuration.GetTunnelEndpoint(TunnelSide.Host).ToString(), Is.EqualTo(value));
    }

    [Test]
    public void OtherSidesInvalidEndpointIsNotReported()
    {
        var configuration = EgressConfiguration.Parse("[tunnel]\nhost_endpoint = \"nonsense\"\n", Source);

        Assert.That(configuration.GetTunnelEndpoint(TunnelSide.Enclave).ToString(), Is.EqualTo("vsock://3:4433"));
    }
}
