using Egress.Configuration;

namespace Egress.Tests.Fuzzing;

/// <summary>The bugs fuzzing found in Egress (docs/fuzzing.md), each with its smallest input.</summary>
public sealed class FuzzFindingTests
{
    /// <summary>
    /// afl-fuzz, config target: a file that ends inside a string's escape sequence made Tomlyn 2.10 throw
    /// ArgumentOutOfRangeException (formatting its end-of-file marker as a character), which escaped
    /// EgressConfiguration.Parse: both hosts would die on such a file with an unhandled exception instead of a located
    /// error. Inputs in fuzz/corpus/config/regressions.
    /// </summary>
    [TestCase("a = \"\\", 1, 7)]
    [TestCase("[egress]\ndestinations = [\"api.example.com\", \"\\u1D", 2, 41)]
    [TestCase("[tunnel]\nenclave_endpoint = \"\"\"\nvsock://3:4433\\U", 3, 17)]
    public void FileEndingInsideAnEscapeSequenceIsALocatedConfigurationError(string text, int line, int column)
    {
        var exception = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse(text, "enclave.toml"));

        Assert.That((exception.Line, exception.Column, exception.Key), Is.EqualTo((line, column, (string?)null)));
        Assert.That(exception.Problem, Does.Contain("escape sequence"));
    }
}
