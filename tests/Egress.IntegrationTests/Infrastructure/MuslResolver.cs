using System.Globalization;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// A tiny static musl program that calls getaddrinfo(name, AF_UNSPEC) and prints the addresses or the error with
/// the time the call took. musl's stub resolver is the strict one: it ignores REFUSED (waits its 5 s timeout, then
/// EAI_AGAIN) and stops walking the search list on anything but a final negative answer. Built with
/// <c>musl-gcc -static</c> (Debian's musl-tools, which .ci/run installs) into a test's work directory.
/// </summary>
internal static class MuslResolver
{
    /// <summary>musl's EAI_NONAME text: the name definitely does not exist.</summary>
    public const string NameDoesNotResolve = "Name does not resolve";

    private const string Source = """
        #include <arpa/inet.h>
        #include <netdb.h>
        #include <stdio.h>
        #include <string.h>
        #include <sys/socket.h>
        #include <time.h>

        int main(int argc, char **argv)
        {
            struct addrinfo hints, *result = 0, *p;
            struct timespec start, end;
            char text[INET6_ADDRSTRLEN];
            int rc;
            long ms;
            if (argc != 2) return 64;
            memset(&hints, 0, sizeof hints);
            hints.ai_family = AF_UNSPEC;
            hints.ai_socktype = SOCK_STREAM;
            clock_gettime(CLOCK_MONOTONIC, &start);
            rc = getaddrinfo(argv[1], 0, &hints, &result);
            clock_gettime(CLOCK_MONOTONIC, &end);
            ms = (end.tv_sec - start.tv_sec) * 1000L + (end.tv_nsec - start.tv_nsec) / 1000000L;
            if (rc != 0) {
                printf("error %d %s\nms %ld\n", rc, gai_strerror(rc), ms);
                return 2;
            }
            for (p = result; p; p = p->ai_next) {
                const void *address = p->ai_family == AF_INET
                    ? (const void *)&((struct sockaddr_in *)p->ai_addr)->sin_addr
                    : (const void *)&((struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
                printf("address %s\n", inet_ntop(p->ai_family, address, text, sizeof text));
            }
            printf("ms %ld\n", ms);
            freeaddrinfo(result);
            return 0;
        }
        """;

    /// <summary>Compiles the program into <paramref name="directory"/> and returns its path.</summary>
    public static async Task<string> BuildAsync(string directory)
    {
        var source = Path.Combine(directory, "musl-getaddrinfo.c");
        var binary = Path.Combine(directory, "musl-getaddrinfo");
        await File.WriteAllTextAsync(source, Source).ConfigureAwait(false);
        var build = await Command.RunAsync(["musl-gcc", "-static", "-O1", "-o", binary, source], TimeSpan.FromSeconds(60)).ConfigureAwait(false);
        if (build.ExitCode != 0)
        {
            throw new InvalidOperationException($"musl-gcc failed (is musl-tools installed? .ci/run installs it):\n{build}");
        }

        return binary;
    }

    /// <summary>Runs the program in <paramref name="namespaceName"/> (so it reads that namespace's resolv.conf).</summary>
    public static async Task<MuslLookup> LookUpAsync(string binary, string namespaceName, string name)
    {
        var run = await Command.RunInNamespaceAsync(namespaceName, TimeSpan.FromSeconds(30), binary, name).ConfigureAwait(false);
        string? error = null;
        long? milliseconds = null;
        var addresses = new List<string>();
        foreach (var line in run.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("address ", StringComparison.Ordinal))
            {
                addresses.Add(line["address ".Length..]);
            }
            else if (line.StartsWith("error ", StringComparison.Ordinal))
            {
                var parts = line.Split(' ', 3);
                error = parts.Length == 3 ? parts[2] : line;
            }
            else if (line.StartsWith("ms ", StringComparison.Ordinal))
            {
                milliseconds = long.Parse(line[3..], CultureInfo.InvariantCulture);
            }
        }

        return new MuslLookup(run, addresses, error, milliseconds);
    }
}

/// <summary>What the musl program printed: addresses, or musl's gai_strerror text; and how long getaddrinfo took.</summary>
internal sealed record MuslLookup(CommandResult Run, IReadOnlyList<string> Addresses, string? Error, long? Milliseconds)
{
    public override string ToString() => Run.ToString();
}
