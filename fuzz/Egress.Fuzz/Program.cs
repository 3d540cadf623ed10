using SharpFuzz;

namespace Egress.Fuzzing;

/// <summary>
/// The afl-fuzz harness: <c>Egress.Fuzz &lt;target&gt;</c> runs one target under SharpFuzz's fork server (input on
/// stdin, as fuzz/run.sh starts it); <c>Egress.Fuzz &lt;target&gt; FILE...</c> runs files once each and prints the
/// verdict or the exception, to reproduce a crash without afl-fuzz.
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        FuzzTarget? target = args.Length > 0 ? FuzzTarget.Find(args[0]) : null;
        if (target is null)
        {
            Console.Error.WriteLine("usage: Egress.Fuzz <target> [FILE...]");
            Console.Error.WriteLine("targets: " + string.Join(", ", FuzzTarget.All.Select(t => t.Name)));
            return 2;
        }

        if (args.Length > 1)
        {
            return Replay(target, args[1..]);
        }

        Fuzzer.Run(stream =>
        {
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            target.Run(copy.ToArray());
        });
        return 0;
    }

    private static int Replay(FuzzTarget target, string[] files)
    {
        int failed = 0;
        foreach (string file in files)
        {
            try
            {
                Console.WriteLine($"{file}: {target.Run(File.ReadAllBytes(file))}");
            }
#pragma warning disable CA1031 // Every exception is a finding: report it and go on with the next file.
            catch (Exception exception)
#pragma warning restore CA1031
            {
                Console.WriteLine($"{file}: CRASH {exception}");
                failed++;
            }
        }

        return failed == 0 ? 0 : 1;
    }
}
