using Egress.Enclave.Report;

namespace Egress.Tests.Enclave;

/// <summary><c>egress-enclave report-to-allowlist</c>: entries on stdout, a count on stderr, exit 1 without would-deny lines.</summary>
public sealed class ReportToAllowlistCommandTests
{
    [Test]
    public void StandardInputBecomesEntriesAndACount()
    {
        string input =
            "warn: Egress.Proxy[460] report mode: would deny connection to 203.0.113.7:443 (name app.unlisted.test): name app.unlisted.test not in allowlist; allowed\n"
            + "warn: Egress.Dns[461] report mode: would deny DNS app.unlisted.test A: name not in allowlist; resolved\n";
        (int code, string output, string error) = Run(input);

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Is.EqualTo("app.unlisted.test:443" + Environment.NewLine));
            Assert.That(error, Does.StartWith("report-to-allowlist: 1 entry from 2 would-deny lines"));
        });
    }

    /// <summary>An operator's trial: a directory was "Access to the path ... is denied", even for root.</summary>
    [Test]
    public void ADirectoryIsRefusedAsADirectory()
    {
        string directory = Directory.CreateTempSubdirectory("egress-report-").FullName;
        try
        {
            Assert.That(() => new ReportToAllowlistCommand(new StringReader(string.Empty), new StringWriter(), new StringWriter()).Run([directory]),
                Throws.TypeOf<IOException>().With.Message.EqualTo($"{directory} is a directory, not a log file"));
        }
        finally
        {
            Directory.Delete(directory);
        }
    }

    /// <summary>A new user's trial: a missing log was the runtime's "Could not find file '/x.log'.".</summary>
    [TestCase("missing.log")]
    [TestCase("no-such-directory/missing.log")]
    public void AMissingLogIsNamedAsMissing(string relative)
    {
        string path = Path.Combine(Path.GetTempPath(), $"egress-report-{Guid.NewGuid():N}", relative);
        Assert.That(() => new ReportToAllowlistCommand(new StringReader(string.Empty), new StringWriter(), new StringWriter()).Run([path]),
            Throws.TypeOf<IOException>().With.Message.EqualTo($"{path}: no such file"));
    }

    [Test]
    public void LinesTheLogSaysWereDroppedAreCountedInAWarning()
    {
        string input =
            "warn: Egress.Proxy[460] report mode: would deny connection to 203.0.113.7:443 (name app.unlisted.test): name app.unlisted.test not in allowlist; allowed\n"
            + "2026-12-01T13:00:41.678Z warn: Egress.Log[3] 12 log line(s) dropped here: stdout was read more slowly than lines came (connections were not held up)\n"
            + """{"EventId":3,"LogLevel":"Warning","Category":"Egress.Log","Message":"3 log line(s) dropped here: stdout was read more slowly than lines came (connections were not held up)","State":{"Count":3,"{OriginalFormat}":"{Count} log line(s) dropped here: stdout was read more slowly than lines came (connections were not held up)"}}""" + "\n";
        (int code, string output, string error) = Run(input);

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Is.EqualTo("app.unlisted.test:443" + Environment.NewLine));
            Assert.That(error, Does.Contain("warning: the log says 15 line(s) were dropped"));
        });
    }

    // A new user's trial: "-" was read as a file named "-" ("Could not find file '/tmp/t1202/-'").
    [Test]
    public void ADashAmongTheLogsIsStandardInput()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "warn: Egress.Gateway[460] report mode: would deny connection to [2001:db8::1]:25: never learned from an allowed name; allowed\n");
            var output = new StringWriter();
            var input = new StringReader("warn: Egress.Dns[461] report mode: would deny DNS app.unlisted.test A: name not in allowlist; resolved\n");

            int code = new ReportToAllowlistCommand(input, output, new StringWriter()).Run([path, "-"]);

            Assert.Multiple(() =>
            {
                Assert.That(code, Is.Zero);
                Assert.That(output.ToString(), Is.EqualTo("[2001:db8::1]:25" + Environment.NewLine + "app.unlisted.test" + Environment.NewLine));
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void LinesTooLongForALogAreCountedInAWarning()
    {
        string input = new string('x', (1 << 20) + 1) + "\n"
            + "warn: Egress.Proxy[460] report mode: would deny connection to 203.0.113.7:443 (name app.unlisted.test): name app.unlisted.test not in allowlist; allowed\n";
        (int code, string output, string error) = Run(input);

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Is.EqualTo("app.unlisted.test:443" + Environment.NewLine));
            Assert.That(error, Does.Contain("report-to-allowlist: warning: 1 line(s) longer than 1 MiB skipped: no host writes such a line (is every input a log?)"));
        });
    }

    [Test]
    public void ALogWithoutWouldDenyLinesExitsOneAndSaysWhy()
    {
        (int code, string output, string error) = Run("info: starting egress-enclave\n");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(1));
            Assert.That(output, Is.Empty);
            Assert.That(error, Does.Contain("no \"report mode: would deny\" lines found"));
        });
    }

    [Test]
    public void FilesAreReadInsteadOfStandardInput()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "warn: Egress.Gateway[460] report mode: would deny connection to [2001:db8::1]:25: never learned from an allowed name; allowed\n");
            var output = new StringWriter();

            int code = new ReportToAllowlistCommand(new StringReader(string.Empty), output, new StringWriter()).Run([path]);

            Assert.That((code, output.ToString()), Is.EqualTo((0, "[2001:db8::1]:25" + Environment.NewLine)));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void WhatReportModeStillDeniedIsLeftOutAndSaidWhy()
    {
        string input =
            "warn: Egress.Proxy[460] report mode: would deny connection to 198.18.0.1:9464: never learned from an allowed name; allowed\n"
            + "warn: Egress.Proxy[460] report mode: would deny connection to 198.18.0.1:22 (name parent.allowed.test): name parent.allowed.test not in allowlist; allowed\n"
            + "warn: Egress.Dns[461] report mode: would deny DNS meta.allowed.test A: name not in allowlist; resolved\n"
            + "warn: Egress.Dns[308] DNS rebinding refused: meta.allowed.test answered 169.254.169.254: not learned: internal range link-local 169.254.0.0/16 (instance metadata) (DNS rebinding protection)\n"
            + "warn: Egress.Gateway[202] connection to 198.18.0.1:9464 denied: an address of the parent itself (interface egt-p); an entry naming this one address allows it; report mode does not relax internal addresses\n"
            + "warn: Egress.Gateway[202] connection to 198.18.0.1:22 (for parent.allowed.test) denied: an address of the parent itself (interface egt-p); an entry naming this one address allows it; report mode does not relax internal addresses\n"
            + "warn: Egress.Proxy[460] report mode: would deny connection to 203.0.113.7:443 (name app.unlisted.test): name app.unlisted.test not in allowlist; allowed\n";
        (int code, string output, string error) = Run(input);

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Is.EqualTo("app.unlisted.test:443" + Environment.NewLine));
            Assert.That(error, Does.Contain("# left out 198.18.0.1:9464: the parent denied it (an address of the parent itself); an entry naming it would open the parent"));
            Assert.That(error, Does.Contain("# left out parent.allowed.test: the parent denied its connection to 198.18.0.1:22 (an address of the parent itself); an entry naming it would open the parent"));
            Assert.That(error, Does.Contain("# left out meta.allowed.test: it answered 169.254.169.254, an internal address report mode never learns"));
        });
    }

    private static (int Code, string Output, string Error) Run(string input)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = new ReportToAllowlistCommand(new StringReader(input), output, error).Run([]);
        return (code, output.ToString(), error.ToString());
    }
}
