using Egress.Policy;

namespace Egress.Enclave.Report;

/// <summary>
/// <c>egress-enclave report-to-allowlist [LOG...]</c>: reads the logs of either host run with <c>egress.mode =
/// "report"</c> (the files, <c>-</c> for standard input, or standard input when none is named) and prints one
/// <c>egress.destinations</c> entry per line that would allow what was reported (see <see cref="ReportedDestinations"/>),
/// then on standard error one <c># left out ...</c> line per destination not proposed, with why (report mode still denied
/// it; only an address entry would let its TLS clients through; its name was only answered NXDOMAIN or SERVFAIL), a
/// warning when the log says lines were dropped or held lines too long for a log, and a count. Exit code 0, or 1 when
/// no would-deny line was found (a log that cannot be read throws; the command line exits 2 for it).
/// </summary>
internal sealed class ReportToAllowlistCommand(TextReader input, TextWriter output, TextWriter error)
{
    public int Run(IReadOnlyList<string> paths)
    {
        var reported = new ReportedDestinations();
        if (paths.Count == 0)
        {
            reported.AddAll(input);
        }

        foreach (string path in paths)
        {
            if (path == "-")
            {
                reported.AddAll(input);
                continue;
            }

            if (Directory.Exists(path))
            {
                // The runtime's own message for it is "Access to the path ... is denied", even for root.
                throw new IOException($"{path} is a directory, not a log file");
            }

            StreamReader reader;
            try
            {
                reader = new StreamReader(path);
            }
            catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
            {
                // The runtime's "Could not find file '/x.log'." read unlike every other line of this command (a trial).
                throw new IOException($"{path}: no such file", ex);
            }

            using (reader)
            {
                reported.AddAll(reader);
            }
        }

        IReadOnlyList<string> entries = reported.Entries();
        foreach (string entry in entries)
        {
            output.WriteLine(entry);
        }

        foreach (string left in reported.LeftOut())
        {
            error.WriteLine("# left out " + left);
        }

        if (reported.LinesDropped > 0)
        {
            error.WriteLine($"report-to-allowlist: warning: the log says {reported.LinesDropped} line(s) were dropped (its stdout was read more slowly than lines came); destinations only they reported are missing here");
        }

        if (reported.LinesTooLong > 0)
        {
            error.WriteLine($"report-to-allowlist: warning: {reported.LinesTooLong} line(s) longer than {ReportedDestinations.MaxLineLength / (1 << 20)} MiB skipped: no host writes such a line (is every input a log?)");
        }

        error.WriteLine(reported.Lines == 0
            ? "report-to-allowlist: no \"report mode: would deny\" lines found (is egress.mode = \"report\" set on the host that wrote the log?)"
            : $"report-to-allowlist: {entries.Count} entr{(entries.Count == 1 ? "y" : "ies")} from {reported.Lines} would-deny line{(reported.Lines == 1 ? string.Empty : "s")}; review them before adding them to egress.destinations");
        return reported.Lines == 0 ? 1 : 0;
    }
}
