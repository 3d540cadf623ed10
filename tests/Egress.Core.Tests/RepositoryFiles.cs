namespace Egress.Tests;

/// <summary>The repository checkout the tests run from, for tests that hold documentation and deploy files to the code.</summary>
internal static class RepositoryFiles
{
    /// <summary>The directory that holds Egress.sln, above the test assembly's directory.</summary>
    /// <exception cref="InvalidOperationException">No Egress.sln above the test directory.</exception>
    internal static string Root()
    {
        for (DirectoryInfo? directory = new(TestContext.CurrentContext.TestDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Egress.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("Egress.sln not found above the test directory.");
    }

    /// <summary>The text of the file at <paramref name="relativePath"/> (e.g. <c>README.md</c>) in the checkout.</summary>
    internal static string Read(params string[] relativePath) => File.ReadAllText(Path.Combine([Root(), .. relativePath]));
}
