using System.Text.RegularExpressions;
using Egress.IntegrationTests.Infrastructure;

namespace Egress.IntegrationTests;

/// <summary>
/// The built hosts' command lines (no root needed): an endpoint is accepted or refused the same way on the command
/// line and in the file, and no verb accepts an option it would ignore.
/// </summary>
[TestFixture]
public sealed class CommandLineTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    // Before one grammar, --metrics-listen took "127.1:9464" while metrics_listen in the file refused it.
    [TestCase("127.1:9464", "not a dotted-quad IPv4 address")]
    [TestCase("[127.0.0.1]:9464", "brackets are only for IPv6 addresses")]
    [TestCase("127.0.0.1", "missing port (write \"address:port\")")]
    public async Task MetricsListenIsRefusedAlikeOnTheCommandLineAndInTheFile(string endPoint, string problem)
    {
        string empty = await WriteConfigAsync(string.Empty);
        string withKey = await WriteConfigAsync($"[host]\nmetrics_listen = \"{endPoint}\"\n");
        try
        {
            var commandLine = await Command.RunAsync(HostBinaries.Host("--config", empty, "--metrics-listen", endPoint), Timeout);
            var file = await Command.RunAsync(HostBinaries.Host("--config", withKey), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(commandLine.ExitCode, Is.EqualTo(2), commandLine.ToString);
                Assert.That(commandLine.StandardError, Is.EqualTo($"error: --metrics-listen '{endPoint}': {problem}\n"), commandLine.ToString);
                Assert.That(file.ExitCode, Is.EqualTo(2), file.ToString);
                Assert.That(file.StandardError, Is.EqualTo($"{withKey}:2:18: error: invalid listen address \"{endPoint}\": {problem} (key 'host.metrics_listen')\n"), file.ToString);
            });
        }
        finally
        {
            File.Delete(empty);
            File.Delete(withKey);
        }
    }

    // Before, "[::1]:9464" (the --help example) passed both checks and egress-host exited 1 at start with "cannot serve
    // metrics on http://[::1]:9464/metrics: Invalid port in prefix.": the exporter's HttpListener (managed, on Linux)
    // takes the first ':' after "http://" for the port's, so it refuses every IPv6 literal. Now refused up front, exit 2.
    // ("[::ffff:127.0.0.1]:19464" is refused before, by the endpoint grammar: EndPointTextTests.)
    [TestCase("[::1]:19464")]
    public async Task MetricsListenOnIPv6IsRefusedBeforeStartOnTheCommandLineAndInTheFile(string endPoint)
    {
        const string Problem = "egress-host's metrics endpoint cannot listen on an IPv6 address (its HTTP server, .NET's HttpListener, refuses IPv6 literals on Linux): listen on 127.0.0.1:PORT";
        string socket = Path.Combine(Path.GetTempPath(), $"egress-cli-{Guid.NewGuid():N}.sock");
        string empty = await WriteConfigAsync(string.Empty);
        string withKey = await WriteConfigAsync($"[host]\nmetrics_listen = \"{endPoint}\"\n");
        try
        {
            var commandLine = await Command.RunAsync(HostBinaries.Host("--config", empty, "--tunnel", $"unix:{socket}", "--metrics-listen", endPoint), Timeout);
            var file = await Command.RunAsync(HostBinaries.Host("--config", withKey, "--tunnel", $"unix:{socket}"), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(commandLine.ExitCode, Is.EqualTo(2), commandLine.ToString);
                Assert.That(commandLine.StandardError, Is.EqualTo($"error: --metrics-listen '{endPoint}': {Problem}\n"), commandLine.ToString);
                Assert.That(file.ExitCode, Is.EqualTo(2), file.ToString);
                Assert.That(file.StandardError, Is.EqualTo($"{withKey}:2:18: error: {Problem} (key 'host.metrics_listen')\n"), file.ToString);
            });
        }
        finally
        {
            File.Delete(empty);
            File.Delete(withKey);
            File.Delete(socket);
        }
    }

    // The second case: before, the command line took 198.18.0.53 twice (and the host asked it twice) while the file
    // refused it.
    [TestCase(
        "error: --dns-upstream '10': not a dotted-quad IPv4 address\n",
        "error: invalid DNS upstream \"10\": not a dotted-quad IPv4 address (key 'host.dns_upstreams')\n",
        "10")]
    [TestCase(
        "error: --dns-upstream \"198.18.0.53:53\" is listed twice\n",
        "error: \"198.18.0.53:53\" is listed twice (key 'host.dns_upstreams')\n",
        "198.18.0.53", "198.18.0.53:53")]
    public async Task DnsUpstreamsAreRefusedAlikeOnTheCommandLineAndInTheFile(string commandLineError, string fileError, params string[] upstreams)
    {
        string empty = await WriteConfigAsync(string.Empty);
        string withKey = await WriteConfigAsync($"[host]\ndns_upstreams = [{string.Join(", ", upstreams.Select(u => $"\"{u}\""))}]\n");
        try
        {
            var commandLine = await Command.RunAsync(
                HostBinaries.Host(["--config", empty, .. upstreams.SelectMany(u => new[] { "--dns-upstream", u })]), Timeout);
            var file = await Command.RunAsync(HostBinaries.Host("--config", withKey), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(commandLine.ExitCode, Is.EqualTo(2), commandLine.ToString);
                Assert.That(commandLine.StandardError, Is.EqualTo(commandLineError), commandLine.ToString);
                Assert.That(file.ExitCode, Is.EqualTo(2), file.ToString);
                Assert.That(file.StandardError, Does.EndWith(fileError), file.ToString);
            });
        }
        finally
        {
            File.Delete(empty);
            File.Delete(withKey);
        }
    }

    // Before, exit 1, as for logs without a would-deny line.
    [Test]
    public async Task ReportToAllowlistExitsTwoWhenALogCannotBeRead()
    {
        var result = await Command.RunAsync(HostBinaries.Enclave("report-to-allowlist", "/nonexistent/enclave.log"), Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
            Assert.That(result.StandardError, Does.StartWith("error: ").And.Contains("/nonexistent/enclave.log"), result.ToString);
            Assert.That(result.StandardOutput, Is.Empty, result.ToString);
        });
    }

    // An operator's trial: check passed a file that egress-host (a malformed host_endpoint) or rules (a proxy_listen no
    // redirected connection can reach) then refused, though the file is shared by both sides and check is what
    // operators validate it with. (An enclave_endpoint of "any" was already refused.)
    [TestCase("[tunnel]\nhost_endpoint = \"bogus\"\n", "2:17: error: invalid tunnel endpoint 'bogus'")]
    [TestCase("[tunnel]\nenclave_endpoint = \"vsock://any:4433\"\n", "2:20: error: the enclave dials this endpoint")]
    [TestCase("[enclave]\nproxy_listen = [\"10.0.0.5:4444\"]\n", "2:17: error: The proxy's IPv4 listen address (10.0.0.5:4444) cannot take redirected connections")]
    [TestCase("[enclave]\ndns_listen = [\"10.0.0.5:53\"]\n", "2:15: error: The DNS forwarder's IPv4 listen address (10.0.0.5:53) cannot take redirected connections")]
    public async Task CheckRefusesWhatEitherSideWouldRefuseToStartWith(string text, string error)
    {
        string path = await WriteConfigAsync("[egress]\nenabled = true\ndestinations = [\"example.com\"]\n" + text);
        try
        {
            var result = await Command.RunAsync(HostBinaries.Enclave("check", "example.com", "--config", path), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
                Assert.That(result.StandardError, Does.Contain($"{path}:{int.Parse(error.Split(':')[0], System.Globalization.CultureInfo.InvariantCulture) + 3}:{error[(error.IndexOf(':') + 1)..]}"), result.ToString);
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    // An operator's trial: these printed Tomlyn's words (a byte that is not UTF-8 as "Invalid UTF-16 surrogate
    // sequence", a redefined table over several lines, an integer beyond 64 bits without its key). The text is written
    // as Latin-1, so that \u00FF is the byte 0xFF.
    [TestCase("[egress]\nenabled = true\ndestinations = [\"api.ex\u00FFample.com\"]\n", "3:24: error: the file is not UTF-8 text (byte 0xFF at byte offset 47); TOML files must be UTF-8")]
    [TestCase("[egress]\n# a\0b\nenabled = true\n", "2:4: error: control character \\u0000 is not allowed in TOML (in a string, write it as the escape \\u0000)")]
    [TestCase("[egress]\nenabled = true\n\n[egress]\ndestinations = []\n", "4:1: error: table [egress] is defined twice (first at line 1)")]
    [TestCase("[host]\nmax_streams = 99999999999999999999999\n", "2:15: error: must be between 0 and 2147483647, found 99999999999999999999999 (key 'host.max_streams')")]
    public async Task ATomlErrorIsOneLocatedLineOnEitherHost(string text, string error)
    {
        string path = Path.Combine(Path.GetTempPath(), $"egress-cli-{Guid.NewGuid():N}.toml");
        await File.WriteAllBytesAsync(path, System.Text.Encoding.Latin1.GetBytes(text));
        try
        {
            var check = await Command.RunAsync(HostBinaries.Enclave("check", "example.com", "--config", path), Timeout);
            var host = await Command.RunAsync(HostBinaries.Host("--config", path), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That((check.ExitCode, check.StandardError), Is.EqualTo((2, $"{path}:{error}\n")), check.ToString);
                Assert.That((host.ExitCode, host.StandardError), Is.EqualTo((2, $"{path}:{error}\n")), host.ToString);
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    // Each of these was accepted and ignored before the command line moved to System.CommandLine.
    [TestCase("check", "10.1.2.3", "--log-format", "json")]
    [TestCase("check", "10.1.2.3", "--log-level", "Debug")]
    [TestCase("check", "10.1.2.3", "--tunnel", "unix:/run/egress.sock")]
    [TestCase("check", "10.1.2.3", "--check-config")]
    public async Task CheckRefusesTheRunOptions(params string[] arguments)
    {
        var result = await Command.RunAsync(HostBinaries.Enclave(arguments), Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
            Assert.That(result.StandardError, Is.EqualTo($"error: {arguments[2]} does not apply to 'check'\n"), result.ToString);
            Assert.That(result.StandardOutput, Is.Empty, result.ToString);
        });
    }

    [TestCase("egress-enclave", "rules", "--netfilter <auto|nft|legacy>")]
    [TestCase("egress-enclave", "check", "<TARGET>")]
    public async Task EachVerbHasItsOwnHelp(string program, string verb, string expected)
    {
        var result = await Command.RunAsync(HostBinaries.Enclave(verb, "--help"), Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.Zero, result.ToString);
            Assert.That(result.StandardOutput, Does.StartWith(program + " "), result.ToString);
            Assert.That(result.StandardOutput, Does.Contain($"{program} {verb}"), result.ToString);
            Assert.That(result.StandardOutput, Does.Contain(expected), result.ToString);
            Assert.That(result.StandardOutput, Does.Not.Contain("--log-format"), result.ToString);
        });
    }

    // An operator's trial: report-to-allowlist --help listed the root's --config, which the verb refuses.
    [Test]
    public async Task ReportToAllowlistHelpListsOnlyWhatItAccepts()
    {
        var result = await Command.RunAsync(HostBinaries.Enclave("report-to-allowlist", "--help"), Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.Zero, result.ToString);
            Assert.That(result.StandardOutput, Does.Contain("egress-enclave report-to-allowlist [<LOG>...]"), result.ToString);
            Assert.That(result.StandardOutput, Does.Not.Contain("--config"), result.ToString);
        });
    }

    // --config is refused by report-to-allowlist before the verb and after it alike.
    [TestCase("report-to-allowlist", "--config", "enclave.toml")]
    [TestCase("--config", "enclave.toml", "report-to-allowlist")]
    public async Task ReportToAllowlistRefusesConfig(params string[] arguments)
    {
        var result = await Command.RunAsync(HostBinaries.Enclave(arguments), Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
            Assert.That(result.StandardError, Does.Match("^error: --config does not apply to 'report-to-allowlist'[^\n]*\n$"), result.ToString); // one line (after the verb it adds how to name a log file like it)
            Assert.That(result.StandardOutput, Is.Empty, result.ToString);
        });
    }

    // An operator's trial: check --help and rules --help gave neither examples nor exit codes. Each code the verb
    // returns is listed (CheckExitsWithTheCodesItsHelpLists runs check's; RulesCommandTests runs those of rules).
    [TestCase("check", "  egress-enclave check api.stripe.com:443 --config ", "Exit codes: 0 allowed", ", 1 denied", ", 2 TARGET is neither an address nor a host name, or a bad command line or configuration")]
    [TestCase("rules", "  egress-enclave rules --config ", "Exit codes: 0 rules printed, applied or removed", ", 1 not done:", ", 2 bad command line or configuration")]
    public async Task VerbHelpHasExamplesAndExitCodes(string verb, string example, params string[] exitCodes)
    {
        var result = await Command.RunAsync(HostBinaries.Enclave(verb, "--help"), Timeout);
        string help = result.StandardOutput.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.Zero, result.ToString);
            Assert.That(result.StandardOutput, Does.Contain("--config <PATH>"), result.ToString);
            Assert.That(result.StandardOutput, Does.Contain("\nExamples:\n" + example), result.ToString);
            Assert.That(result.StandardOutput, Does.Contain("\nExit codes: "), result.ToString);
            foreach (string code in exitCodes)
            {
                Assert.That(help, Does.Contain(code), result.ToString);
            }
        });
    }

    [Test]
    public async Task CheckExitsWithTheCodesItsHelpLists()
    {
        string path = await WriteConfigAsync("[egress]\nenabled = true\ndestinations = [\"api.example.com:443\"]\n");
        try
        {
            var allowed = await Command.RunAsync(HostBinaries.Enclave("check", "api.example.com:443", "--config", path), Timeout);
            var deniedPort = await Command.RunAsync(HostBinaries.Enclave("--config", path, "check", "api.example.com:80"), Timeout);
            var deniedAddress = await Command.RunAsync(HostBinaries.Enclave("check", "169.254.169.254", "--config", path), Timeout);
            var neither = await Command.RunAsync(HostBinaries.Enclave("check", "https://api.example.com", "--config", path), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(allowed.ExitCode, Is.Zero, allowed.ToString);
                Assert.That(deniedPort.ExitCode, Is.EqualTo(1), deniedPort.ToString);
                Assert.That(deniedAddress.ExitCode, Is.EqualTo(1), deniedAddress.ToString);
                Assert.That(neither.ExitCode, Is.EqualTo(2), neither.ToString);
                Assert.That(neither.StandardError, Does.StartWith("error: check: "), neither.ToString);
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    // An operator's trial: an unknown option got System.CommandLine's "Unrecognized command or argument '--tunel'.",
    // naming neither the option it resembles nor where the valid ones are listed. A value that follows it is taken as
    // its value, not reported again.
    [TestCase("error: unknown option '--tunel'; did you mean '--tunnel'? (egress-enclave --help lists the options)\n", "--tunel", "unix:/run/egress.sock")]
    [TestCase("error: unknown option '--frobnicate' (egress-enclave --help lists the options)\n", "--frobnicate")]
    [TestCase("error: unknown option '--aply' for 'rules'; did you mean '--apply'? (egress-enclave rules --help lists its options)\n", "rules", "--aply")]
    [TestCase("error: --apply does not apply to 'egress-enclave' (an option of 'rules')\n", "--apply")]
    // A verb with an argument would take the word as its value: a log named "--stdin", a target named "--confg".
    [TestCase("error: unknown option '--stdin' for 'report-to-allowlist' (egress-enclave report-to-allowlist --help lists its options); a log file whose name starts with '-' is given as ./--stdin\n", "report-to-allowlist", "--stdin")]
    [TestCase("error: unknown option '--confg' for 'check'; did you mean '--config'? (egress-enclave check --help lists its options)\n", "check", "--confg")]
    [TestCase("error: --netfilter does not apply to 'check' (an option of 'rules')\n", "check", "example.com", "--netfilter", "legacy")]
    // The word after it is its value, once more: before, 'x.toml' was reported again as a stray argument.
    [TestCase("error: unknown option '--confg' for 'check'; did you mean '--config'? (egress-enclave check --help lists its options)\n", "check", "--confg", "x.toml")]
    // Or the target it displaced: before, 'check --version x' printed "unexpected argument 'x'" above the real error.
    [TestCase("error: --version does not apply to 'check'\n", "check", "--version", "x")]
    [TestCase("error: unknown option '--bogus' for 'check' (egress-enclave check --help lists its options)\n", "check", "--bogus", "x")]
    [TestCase("error: unexpected argument 'y' for 'check' (egress-enclave check --help lists what it takes)\nerror: --version does not apply to 'check'\n", "check", "--version", "x", "y")]
    // A new user's trial: System.CommandLine's "Required argument missing for command: 'check'.", "... for option:
    // '--config'.", "Option '--config' expects a single argument but 2 were provided.", with no pointer to help.
    [TestCase("error: 'check' needs TARGET (egress-enclave check --help says what it takes)\n", "check", "--config", "x.toml")]
    [TestCase("error: --netfilter needs a value (auto|nft|legacy)\n", "rules", "--netfilter")]
    [TestCase("error: --config is given more than once; give it once\n", "check", "a.example", "--config", "a.toml", "--config", "b.toml")]
    // A new user's trial: --force was accepted and ignored where it changes nothing.
    [TestCase("error: --force applies only with --apply\n", "rules", "--force")]
    [TestCase("error: --force applies only with --apply\n", "rules", "--remove", "--force")]
    // A new user's trial: "unknown option '--config' for 'check'; did you mean '--config'?".
    [TestCase("error: '--config' after '--' is an argument, not an option; options go before '--'\n", "check", "a.example", "--", "--config", "x.toml")]
    // An operator's trial: a mistyped verb got System.CommandLine's "Unrecognized command or argument 'chek'.".
    [TestCase("error: unknown command 'chek'; did you mean 'check'? (egress-enclave --help lists the commands)\n", "chek", "example.com")]
    [TestCase("error: unknown command 'rule'; did you mean 'rules'? (egress-enclave --help lists the commands)\n", "rule")]
    [TestCase("error: unknown command 'frobnicate' (egress-enclave --help lists the commands)\n", "--config", "x.toml", "frobnicate")]
    // A word a verb has no place for, after the verb: named with the verb, not as a command.
    [TestCase("error: unexpected argument 'extra' for 'run' (egress-enclave run --help lists what it takes)\n", "run", "extra")]
    [TestCase("error: unexpected argument 'b' for 'check' (egress-enclave check --help lists what it takes)\n", "check", "a.example", "b")]
    // A new user's trial: "--check-config does not apply to 'run'", while run takes it, after its name.
    [TestCase("error: --check-config goes after 'run' (its options follow it: run --check-config ...)\n", "--check-config", "run")]
    [TestCase("error: --log-level goes after 'run' (its options follow it: run --log-level ...)\n", "--log-level", "Debug", "run")]
    // A new user's trial: an empty path ended the process with an unhandled ArgumentException (exit 134).
    [TestCase("error: --config needs a path (PATH), not an empty string\n", "--config", "")]
    [TestCase("error: --config needs a path (PATH), not an empty string\n", "check", "a.example", "--config", "")]
    public async Task AnUnknownOptionOrCommandIsNamedWithTheClosestOneAndWhereHelpIs(string expected, params string[] arguments)
    {
        var result = await Command.RunAsync(HostBinaries.Enclave(arguments), Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
            Assert.That(result.StandardError, Is.EqualTo(expected), result.ToString);
            Assert.That(result.StandardOutput, Is.Empty, result.ToString);
        });
    }

    /// <summary>Both endpoints from the file: the error is located at the file's key, as its other errors are (it
    /// was a bare "error:" line naming neither file nor key).</summary>
    [Test]
    public async Task MetricsAndTunnelOnOnePortInTheFileIsAnErrorAtTheKey()
    {
        string path = await WriteConfigAsync("[tunnel]\nhost_endpoint = \"tcp://127.0.0.1:19465\"\n[host]\nmetrics_listen = \"127.0.0.1:19465\"\n");
        try
        {
            var result = await Command.RunAsync(HostBinaries.Host("--config", path, "--check-config"), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
                Assert.That(result.StandardError, Is.EqualTo(
                    $"{path}:4:18: error: the metrics endpoint 127.0.0.1:19465 and the tunnel endpoint 127.0.0.1:19465 are the same port: give one of them another (key 'host.metrics_listen')\n"), result.ToString);
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestCase("error: unknown option '--metrics-listn'; did you mean '--metrics-listen'? (egress-host --help lists the options)\n", "--metrics-listn", "127.0.0.1:9464")]
    // A new user's trial: System.CommandLine's "Unrecognized command or argument 'run'." and "Required argument
    // missing for option: '--config'.".
    [TestCase("error: unexpected argument 'run': egress-host takes options only (egress-host --help lists them)\n", "run")]
    [TestCase("error: --config needs a value (PATH)\n", "--config")]
    [TestCase("error: --config needs a path (PATH), not an empty string\n", "--config", "", "--check-config")]
    // A new user's trial: --check-config passed these, and a start failed to bind the second, blaming another instance.
    [TestCase("error: the metrics endpoint 127.0.0.1:19464 and the tunnel endpoint 127.0.0.1:19464 are the same port: give one of them another\n",
        "--config", "/dev/null", "--tunnel", "tcp://127.0.0.1:19464", "--metrics-listen", "127.0.0.1:19464", "--check-config")]
    public async Task AWrongHostCommandLineSaysWhatIsWrongAndWhereHelpIs(string expected, params string[] arguments)
    {
        var result = await Command.RunAsync(HostBinaries.Host(arguments), Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
            Assert.That(result.StandardError, Is.EqualTo(expected), result.ToString);
        });
    }

    // A new user's trial: --version printed the version and exited 0 whatever followed it (System.CommandLine's version
    // action clears parse errors). --version alone still prints the version (VersionTests checks the line).
    [TestCase("egress-host", "error: unknown option '--bogus' (egress-host --help lists the options)\n", "--version", "--bogus")]
    [TestCase("egress-enclave", "error: unknown option '--bogus' (egress-enclave --help lists the options)\n", "--version", "--bogus")]
    [TestCase("egress-host", "error: --version takes no other options or arguments; give it alone\n", "--version", "--config", "x.toml")]
    [TestCase("egress-enclave", "error: --version takes no other options or arguments; give it alone\n", "--version", "--config", "x.toml")]
    [TestCase("egress-host", "", "--version")]
    [TestCase("egress-enclave", "", "--version")]
    public async Task VersionWithAnythingElseIsABadCommandLine(string program, string expected, params string[] arguments)
    {
        var result = await Command.RunAsync(program == "egress-host" ? HostBinaries.Host(arguments) : HostBinaries.Enclave(arguments), Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(expected.Length == 0 ? 0 : 2), result.ToString);
            Assert.That(result.StandardError, Is.EqualTo(expected), result.ToString);
            Assert.That(result.StandardOutput, expected.Length == 0 ? Does.StartWith(program + " ") : Is.Empty, result.ToString);
        });
    }

    // A trial: "--version --help" printed the help and "--help --version" an error (System.CommandLine runs the last of
    // the two). Help wins in either order, at a verb too.
    [TestCase("egress-host", "--help", "--version")]
    [TestCase("egress-host", "--version", "--help")]
    [TestCase("egress-enclave", "--help", "--version")]
    [TestCase("egress-enclave", "--version", "--help")]
    [TestCase("egress-enclave", "rules", "--help", "--version")]
    public async Task HelpWithVersionPrintsTheHelpInEitherOrder(string program, params string[] arguments)
    {
        var result = await Command.RunAsync(program == "egress-host" ? HostBinaries.Host(arguments) : HostBinaries.Enclave(arguments), Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.Zero, result.ToString);
            Assert.That(result.StandardError, Is.Empty, result.ToString);
            Assert.That(result.StandardOutput, Does.StartWith(program + " ").And.Contain("Usage:"), result.ToString);
        });
    }

    // A trial: System.CommandLine's bool options take an optional true/false, so "--check-config false" started the
    // host (it was a start with checking off) and "rules --apply false" printed the rules. A flag takes no value.
    [TestCase("egress-host", "error: --check-config takes no value ('false'): give it alone to turn it on, leave it out to keep it off\n", "--config", "/dev/null", "--check-config", "false")]
    [TestCase("egress-host", "error: --check-config takes no value ('false'): give it alone to turn it on, leave it out to keep it off\n", "--config", "/dev/null", "--check-config=false")]
    [TestCase("egress-host", "error: --metrics-allow-remote takes no value ('true'): give it alone to turn it on, leave it out to keep it off\n", "--metrics-allow-remote", "true")]
    [TestCase("egress-enclave", "error: --check-config takes no value ('false'): give it alone to turn it on, leave it out to keep it off\n", "run", "--check-config", "false")]
    [TestCase("egress-enclave", "error: --apply takes no value ('false'): give it alone to turn it on, leave it out to keep it off\n", "rules", "--apply", "false")]
    public async Task AFlagFollowedByAValueIsABadCommandLine(string program, string expected, params string[] arguments)
    {
        var result = await Command.RunAsync(program == "egress-host" ? HostBinaries.Host(arguments) : HostBinaries.Enclave(arguments), Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
            Assert.That(result.StandardError, Is.EqualTo(expected), result.ToString);
            Assert.That(result.StandardOutput, Is.Empty, result.ToString);
        });
    }

    // Accepted and ignored before: a permission for a metrics endpoint that is not there.
    [Test]
    public async Task MetricsAllowRemoteWithoutAMetricsEndpointIsRefused()
    {
        string empty = await WriteConfigAsync(string.Empty);
        try
        {
            var result = await Command.RunAsync(HostBinaries.Host("--config", empty, "--metrics-allow-remote"), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
                Assert.That(result.StandardError, Is.EqualTo("error: --metrics-allow-remote has nothing to allow: no --metrics-listen and no [host] metrics_listen\n"), result.ToString);
            });
        }
        finally
        {
            File.Delete(empty);
        }
    }

    /// <summary>A tcp:// tunnel on a non-loopback address was accepted silently: anything that reaches it could egress.</summary>
    [TestCase("--tunnel", "tcp://0.0.0.0:4433", "error: --tunnel tcp://0.0.0.0:4433: a tcp:// tunnel endpoint on a non-loopback address lets anything that reaches it open tunnel streams")]
    [TestCase("config", "tcp://[::]:4433", ":2:17: error: a tcp:// tunnel endpoint on a non-loopback address lets anything that reaches it open tunnel streams")]
    public async Task ARemoteTcpTunnelNeedsTheOptIn(string where, string endpoint, string expected)
    {
        string path = await WriteConfigAsync(where == "config" ? $"[tunnel]\nhost_endpoint = \"{endpoint}\"\n" : string.Empty);
        try
        {
            var result = await Command.RunAsync(where == "config" ? HostBinaries.Host("--config", path) : HostBinaries.Host("--config", path, "--tunnel", endpoint), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
                Assert.That(result.StandardError, Does.Contain(expected).And.Contains("or pass --tunnel-allow-remote"), result.ToString);
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public async Task TunnelAllowRemoteWithoutARemoteTcpTunnelIsRefused()
    {
        string path = await WriteConfigAsync(string.Empty);
        try
        {
            var result = await Command.RunAsync(HostBinaries.Host("--config", path, "--tunnel", "tcp://127.0.0.1:4433", "--tunnel-allow-remote"), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
                Assert.That(result.StandardError, Is.EqualTo("error: --tunnel-allow-remote has nothing to allow: the tunnel endpoint is not tcp:// on a non-loopback address\n"), result.ToString);
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>An audit_log file that cannot be opened ended egress-host with an unhandled exception and a stack trace.</summary>
    [Test]
    public async Task AnAuditLogThatCannotBeOpenedIsOneLocatedError()
    {
        string socket = Path.Combine(Path.GetTempPath(), $"egress-audit-{Guid.NewGuid():N}.sock");
        string path = await WriteConfigAsync($"[tunnel]\nhost_endpoint = \"unix:{socket}\"\n[host]\naudit_log = \"/nonexistent-{Guid.NewGuid():N}/audit.jsonl\"\n");
        try
        {
            var result = await Command.RunAsync(HostBinaries.Host("--config", path), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
                Assert.That(result.StandardError, Does.StartWith($"{path}:4:13: error: cannot open \"/nonexistent-").And.Contain("(key 'host.audit_log')"), result.ToString);
                Assert.That(result.StandardError + result.StandardOutput, Does.Not.Contain("Unhandled exception"), result.ToString);
            });
        }
        finally
        {
            File.Delete(path);
            File.Delete(socket);
        }
    }

    /// <summary>A new user's trial: egress-host's own keys (the mapped files, the audit log, the endpoints) could be checked
    /// only by starting it, and deploy/host/install.sh installed a file the service then refused.</summary>
    [Test]
    public async Task CheckConfigSaysWhatWouldRunWithoutBindingOrCreatingAnything()
    {
        string directory = Directory.CreateTempSubdirectory("egress-check-").FullName;
        try
        {
            string socket = Path.Combine(directory, "tunnel.sock");
            string audit = Path.Combine(directory, "audit.jsonl");
            string mapped = Path.Combine(directory, "a.toml");
            await File.WriteAllTextAsync(mapped, "[egress]\nenabled = true\ndestinations = [\"api.example.com:443\"]\n");
            string path = Path.Combine(directory, "enclave.toml");
            await File.WriteAllTextAsync(path, $"[tunnel]\nhost_endpoint = \"unix:{socket}\"\n[host]\naudit_log = \"{audit}\"\nmetrics_listen = \"127.0.0.1:9464\"\ndns_upstreams = [\"198.18.0.53\"]\ninternal_networks = [\"2600:1f18:abcd:1200::/56\", \"10.0.0.0/16\"]\n[[host.enclaves]]\ncid = \"any\"\nconfig = \"a.toml\"\n");

            var result = await Command.RunAsync(HostBinaries.Host("--config", path, "--check-config"), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(0), result.ToString);
                Assert.That(result.StandardError, Is.Empty, result.ToString);
                Assert.That(result.StandardOutput, Does.Match(
                    $"^{Regex.Escape(path)}: valid for egress-host \\(checked without binding or starting anything\\)\n"
                    + $"  enclave any CID: policy sha256:[0-9a-f]{{12}} \\(egress enabled, 1 destination\\) from {Regex.Escape(mapped)}\n"
                    + "  internal networks besides the built-in ranges: 2600:1f18:abcd:1200::/56, 10\\.0\\.0\\.0/16 \\(\\[host\\] internal_networks\\)\n"
                    + $"  tunnel: {Regex.Escape($"unix:{socket}")}\n"
                    + "  DNS upstreams: 198\\.18\\.0\\.53:53 \\(\\[host\\] dns_upstreams\\)\n"
                    + "  metrics: http://127\\.0\\.0\\.1:9464/metrics\n"
                    + $"  audit log: {Regex.Escape(audit)} \\(created at start\\); under the shipped systemd unit only /var/log/egress/ is writable\n$"), result.ToString);
                Assert.That(Directory.GetFileSystemEntries(directory).Select(Path.GetFileName), Is.EquivalentTo(new[] { "a.toml", "enclave.toml" }), "nothing bound, nothing created");
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>A new user's trial: the check said "valid" for a Unix tunnel socket in a directory that does not exist,
    /// which a start then refused (exit 1). Said in the summary, not refused: a unit's RuntimeDirectory= may create it.</summary>
    [Test]
    public async Task CheckConfigWarnsOfAUnixTunnelSocketWhoseDirectoryIsMissing()
    {
        string directory = Directory.CreateTempSubdirectory("egress-check-").FullName;
        try
        {
            string missing = Path.Combine(directory, "not-there");
            string path = Path.Combine(directory, "enclave.toml");
            await File.WriteAllTextAsync(path, "[egress]\nenabled = true\ndestinations = [\"api.example.com:443\"]\n");

            var result = await Command.RunAsync(
                HostBinaries.Host("--config", path, "--tunnel", $"unix:{missing}/x.sock", "--check-config"), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(0), result.ToString);
                Assert.That(result.StandardOutput, Does.Contain(
                    $"  tunnel: unix:{missing}/x.sock (warning: its directory {missing} does not exist now: a start fails unless it is created first)\n"), result.ToString);
                Assert.That(Directory.Exists(missing), Is.False, "nothing created");
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>A new user's trial: the check refused a dangling symbolic link (a start creates its target), and hung
    /// opening a FIFO for writing (it waits for a reader). Links are followed as open(2) follows them, and nothing is
    /// opened: the rights are asked with access(2).</summary>
    [TestCase("link", "(created at start)")]
    [TestCase("fifo", "(a named pipe: a start waits until a reader opens it, and cannot be stopped before then)")]
    public async Task CheckConfigFollowsAnAuditLogLinkAndNeverOpensIt(string kind, string said)
    {
        string directory = Directory.CreateTempSubdirectory("egress-check-").FullName;
        try
        {
            string audit = Path.Combine(directory, "audit.jsonl");
            if (kind == "link")
            {
                File.CreateSymbolicLink(audit, Path.Combine(directory, "target.jsonl"));
            }
            else
            {
                await Command.RunCheckedAsync("mkfifo", audit);
            }

            string path = Path.Combine(directory, "enclave.toml");
            await File.WriteAllTextAsync(path, $"[tunnel]\nhost_endpoint = \"unix:{directory}/t.sock\"\n[host]\naudit_log = \"{audit}\"\n");

            var result = await Command.RunAsync(HostBinaries.Host("--config", path, "--check-config"), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(0), result.ToString);
                Assert.That(result.StandardOutput, Does.EndWith($"  audit log: {audit} {said}; under the shipped systemd unit only /var/log/egress/ is writable\n"), result.ToString);
                Assert.That(Directory.GetFileSystemEntries(directory).Select(Path.GetFileName), Is.EquivalentTo(new[] { "audit.jsonl", "enclave.toml" }), "nothing created");
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>egress-enclave's check, for an image build: a bad file was found only when the enclave booted.</summary>
    [TestCase]
    [TestCase("run")]
    public async Task EnclaveCheckConfigSaysWhatWouldRunWithoutBindingOrCreatingAnything(params string[] verb)
    {
        string directory = Directory.CreateTempSubdirectory("egress-check-").FullName;
        try
        {
            string audit = Path.Combine(directory, "audit.jsonl");
            string path = Path.Combine(directory, "enclave.toml");
            await File.WriteAllTextAsync(path, $"[egress]\nenabled = true\ndestinations = [\"api.example.com:443\"]\n[tunnel]\nenclave_endpoint = \"unix:{directory}/t.sock\"\n[enclave]\nproxy_listen = [\"127.0.0.1:14444\"]\naudit_log = \"{audit}\"\n");

            var result = await Command.RunAsync(HostBinaries.Enclave([.. verb, "--config", path, "--check-config"]), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(0), result.ToString);
                Assert.That(result.StandardError, Is.Empty, result.ToString);
                Assert.That(result.StandardOutput, Does.Match(
                    $"^{Regex.Escape(path)}: valid for egress-enclave \\(checked without binding or starting anything\\)\n"
                    + "  policy sha256:[0-9a-f]{12} \\(egress enabled, 1 destination\\)\n"
                    + "  proxy: 127\\.0\\.0\\.1:14444 \\(redirect rules send TCP to 127\\.0\\.0\\.1:14444\\)\n"
                    + "  DNS forwarder: 127\\.0\\.0\\.1:53, \\[::1\\]:53, UDP and TCP \\(redirect rules send DNS to 127\\.0\\.0\\.1:53, \\[::1\\]:53\\)\n"
                    + $"  tunnel: {Regex.Escape($"unix:{directory}/t.sock")}\n"
                    + $"  audit log: {Regex.Escape(audit)} \\(opened at start, in the enclave; not looked at here\\)\n"
                    + "  denial reports to the parent: counts by kind, reason and destination every 10 s \\(enclave\\.report_denials = \"destinations\": denied addresses and names reach the parent's log\\)\n"
                    + "  learned addresses kept for a restart: off \\(--learned-addresses\\)\n$"), result.ToString);
                Assert.That(Directory.GetFileSystemEntries(directory).Select(Path.GetFileName), Is.EquivalentTo(new[] { "enclave.toml" }), "nothing bound, nothing created");
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>--learned-addresses is checked before anything starts: a path that cannot name a file is refused, exit 2;
    /// its directory is the run's to look at, in the enclave (a missing one keeps nothing, with a warning).</summary>
    [TestCase("state/learned", "error: --learned-addresses: 'state/learned' is not an absolute path")]
    [TestCase("DIR/", "error: --learned-addresses: 'DIR/' names a directory, not a file")]
    [TestCase("DIR/learned", null)]
    [TestCase("DIR/missing/learned", null)]
    public async Task EnclaveLearnedAddressesFileIsCheckedBeforeTheStart(string file, string? error)
    {
        string directory = Directory.CreateTempSubdirectory("egress-check-").FullName;
        try
        {
            string path = Path.Combine(directory, "enclave.toml");
            await File.WriteAllTextAsync(path, $"[egress]\nenabled = true\ndestinations = [\"api.example.com:443\"]\n[tunnel]\nenclave_endpoint = \"unix:{directory}/t.sock\"\n");
            string learned = file.Replace("DIR", directory, StringComparison.Ordinal);

            var result = await Command.RunAsync(HostBinaries.Enclave("--config", path, "--learned-addresses", learned, "--check-config"), Timeout);

            if (error is null)
            {
                Assert.That(result.StandardOutput, Does.Contain($"  learned addresses kept for a restart: {learned} (its directory is checked at start, in the enclave; not looked at here)\n"), result.ToString);
            }
            else
            {
                Assert.Multiple(() =>
                {
                    Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
                    Assert.That(result.StandardError, Is.EqualTo(error.Replace("DIR", directory, StringComparison.Ordinal) + "\n"), result.ToString);
                });
            }
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>Each part a start (or, for egress-enclave, rules --apply) would refuse is refused by the check, located, exit 2.</summary>
    [TestCase("egress-host", "[[host.enclaves]]\ncid = \"any\"\nconfig = \"missing.toml\"\n", ":3:10: error: cannot read \"DIR/missing.toml\"")]
    [TestCase("egress-host", "[host]\naudit_log = \"DIR\"\n", ":2:13: error: cannot open \"DIR\" for the audit log: it is a directory (key 'host.audit_log')")]
    [TestCase("egress-host", "[host]\nmetrics_listen = \"0.0.0.0:9464\"\n", ":2:18: error: the metrics endpoint has no authentication")]
    [TestCase("egress-host", "[host]\nmetrics_listn = \"127.0.0.1:9464\"\n", ":2:1: error: unknown key")]
    // A new user's trial: a missing directory was "valid" to the check and fatal at start.
    [TestCase("egress-host", "[host]\naudit_log = \"DIR/missing/audit.jsonl\"\n", ":2:13: error: cannot open \"DIR/missing/audit.jsonl\" for the audit log: its directory DIR/missing does not exist (key 'host.audit_log')")]
    [TestCase("egress-enclave", "[egress]\nenabled = true\ndestinations = [\"a..example\"]\n", ":3:17: error: invalid destination \"a..example\": has an empty label (key 'egress.destinations')")]
    // A new user's trial: "valid" to --check-config, refused by rules --apply (the enclave's first step) and check.
    [TestCase("egress-enclave", "[enclave]\nproxy_listen = [\"192.0.2.2:14444\"]\n", ":2:17: error: The proxy's IPv4 listen address (192.0.2.2:14444) cannot take redirected connections")]
    [TestCase("egress-enclave", "[tunnel]\nenclave_endpoint = \"tcp://127.1:4433\"\n", ":2:20: error: invalid tunnel endpoint 'tcp://127.1:4433'")]
    public async Task CheckConfigRefusesWhatAStartWouldRefuse(string program, string text, string error)
    {
        string directory = Directory.CreateTempSubdirectory("egress-check-").FullName;
        try
        {
            string path = Path.Combine(directory, "enclave.toml");
            await File.WriteAllTextAsync(path, text.Replace("DIR", directory, StringComparison.Ordinal));
            string[] arguments = ["--config", path, "--check-config"];

            var result = await Command.RunAsync(program == "egress-host" ? HostBinaries.Host(arguments) : HostBinaries.Enclave(arguments), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString);
                Assert.That(result.StandardError, Does.StartWith(path + error.Replace("DIR", directory, StringComparison.Ordinal)), result.ToString);
                Assert.That(result.StandardOutput, Is.Empty, result.ToString);
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public async Task RunSpelledOutIsTheSameAsNoVerb()
    {
        string path = await WriteConfigAsync("[tunnel]\nenclave_endpoint = \"tcp://127.1:4433\"\n");
        try
        {
            var implicitRun = await Command.RunAsync(HostBinaries.Enclave("--config", path, "--log-level", "Debug"), Timeout);
            var explicitRun = await Command.RunAsync(HostBinaries.Enclave("run", "--config", path, "--log-level", "Debug"), Timeout);

            Assert.Multiple(() =>
            {
                Assert.That(implicitRun.ExitCode, Is.EqualTo(2), implicitRun.ToString);
                Assert.That(implicitRun.StandardError, Does.StartWith($"{path}:2:20: error: invalid tunnel endpoint 'tcp://127.1:4433': not a dotted-quad IPv4 address."), implicitRun.ToString);
                Assert.That((explicitRun.ExitCode, explicitRun.StandardError), Is.EqualTo((implicitRun.ExitCode, implicitRun.StandardError)), explicitRun.ToString);
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static async Task<string> WriteConfigAsync(string text)
    {
        string path = Path.Combine(Path.GetTempPath(), $"egress-cli-{Guid.NewGuid():N}.toml");
        await File.WriteAllTextAsync(path, text);
        return path;
    }
}
