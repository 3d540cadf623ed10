using Egress.Configuration;

namespace Egress.Tests.Configuration;

/// <summary>
/// What TOML 1.0 asks of a file's bytes before its syntax (UTF-8), reported by <see cref="EgressConfiguration.Load"/> as
/// a located error in the project's words. An operator's trial: a file with a byte that is not UTF-8 got Tomlyn's
/// "Invalid UTF-16 surrogate sequence" or was read with U+FFFD in place of the byte.
/// </summary>
public sealed class ConfigurationTextTests
{
    private string _directory = null!;

    [SetUp]
    public void SetUp() => _directory = Directory.CreateTempSubdirectory("egress-config-text-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_directory, recursive: true);

    // "[egress]\n" and "enabled = true\n" are 24 bytes; the byte is the 24th character of line 3.
    [TestCase(new byte[] { 0xFF }, 3, 24, "the file is not UTF-8 text (byte 0xFF at byte offset 47); TOML files must be UTF-8", TestName = "0xFF in a string")]
    [TestCase(new byte[] { 0xE9 }, 3, 24, "the file is not UTF-8 text (byte 0xE9 at byte offset 47); TOML files must be UTF-8", TestName = "A Latin-1 e-acute in a string")]
    [TestCase(new byte[] { 0xED, 0xA0, 0x80 }, 3, 24, "the file is not UTF-8 text (byte 0xED at byte offset 47); TOML files must be UTF-8", TestName = "A surrogate encoded as UTF-8 (CESU-8)")]
    public void AByteThatIsNotUtf8IsLocatedAndNamed(byte[] bad, int line, int column, string problem)
    {
        byte[] bytes = [.. "[egress]\nenabled = true\ndestinations = [\"api.ex"u8, .. bad, .. "ample.com\"]\n"u8];

        AssertLoadError(bytes, line, column, problem);
    }

    [Test]
    public void AByteThatIsNotUtf8InACommentIsLocatedAndNamed() =>
        AssertLoadError([.. "[egress]\n# caf"u8, 0xFF, .. "\nenabled = true\n"u8], 2, 6, "the file is not UTF-8 text (byte 0xFF at byte offset 14); TOML files must be UTF-8");

    [Test]
    public void ASequenceCutAtTheEndOfTheFileIsLocatedAndNamed() =>
        AssertLoadError([.. "[egress] # \u20ac "u8, 0xE2, 0x82], 1, 14, "the file is not UTF-8 text (byte 0xE2 at byte offset 15); TOML files must be UTF-8");

    [Test]
    public void ByteOffsetCountsTheUtf8ByteOrderMarkAndColumnsCountCharacters() =>
        AssertLoadError([0xEF, 0xBB, 0xBF, .. "# \u00e9t\u00e9 \U0001F600 "u8, 0xC0, 0x80, .. "\n"u8], 1, 9, "the file is not UTF-8 text (byte 0xC0 at byte offset 16); TOML files must be UTF-8");

    [TestCase(new byte[] { 0xFF, 0xFE }, TestName = "UTF-16 little-endian")]
    [TestCase(new byte[] { 0xFE, 0xFF }, TestName = "UTF-16 big-endian")]
    public void AUtf16FileIsSaidToBeOne(byte[] byteOrderMark)
    {
        bool littleEndian = byteOrderMark[0] == 0xFF;
        byte[] text = (littleEndian ? System.Text.Encoding.Unicode : System.Text.Encoding.BigEndianUnicode).GetBytes("[egress]\nenabled = true\n");

        AssertLoadError([.. byteOrderMark, .. text], 1, 1, $"the file is UTF-16 text (it starts with the byte order mark 0x{byteOrderMark[0]:X2} 0x{byteOrderMark[1]:X2}); TOML files must be UTF-8");
    }

    [Test]
    public void UnicodeTextIsReadAsBefore()
    {
        string path = Write([0xEF, 0xBB, 0xBF, .. "# caf\u00e9 \U0001F600\n[egress]\nenabled = true\ndestinations = [\"b\u00fccher.example\"]\n"u8]);

        Assert.That(EgressConfiguration.Load(path).Egress.Destinations.Select(d => d.ToString()), Is.EqualTo(new[] { "b\u00fccher.example" }));
    }

    // Parse takes a string: one from code can hold what no UTF-8 file decodes to.
    [Test]
    public void ALoneSurrogateInParsedTextIsLocatedAndNamed()
    {
        var error = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Parse("[egress]\n# a\ud800b\nenabled = true\n", "enclave.toml"))!;

        Assert.That(error.Message, Is.EqualTo("enclave.toml:2:4: error: the text is not Unicode: a lone UTF-16 surrogate (U+D800)"));
    }

    private void AssertLoadError(byte[] bytes, int line, int column, string problem)
    {
        string path = Write(bytes);

        var error = Assert.Throws<ConfigurationException>(() => EgressConfiguration.Load(path))!;

        Assert.Multiple(() =>
        {
            Assert.That(error.Message, Is.EqualTo($"{path}:{line}:{column}: error: {problem}"));
            Assert.That((error.Line, error.Column, error.Key), Is.EqualTo((line, column, (string?)null)));
        });
    }

    private string Write(byte[] bytes)
    {
        string path = Path.Combine(_directory, "enclave.toml");
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
