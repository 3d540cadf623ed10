namespace Egress.IntegrationTests.Infrastructure;

/// <summary>The checkout the tests were built from: its scripts, samples and corpus.</summary>
internal static class Repository
{
    /// <summary>The directory holding Egress.sln, found upwards from the test assembly.</summary>
    /// <exception cref="InvalidOperationException">No Egress.sln above the test assembly.</exception>
    public static string Root
    {
        get
        {
            for (DirectoryInfo? directory = new(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
            {
                if (File.Exists(Path.Combine(directory.FullName, "Egress.sln")))
                {
                    return directory.FullName;
                }
            }

            throw new InvalidOperationException($"no Egress.sln above {AppContext.BaseDirectory}");
        }
    }
}
