using System.Text;
using Egress.Configuration;
using static Egress.Fuzzing.FuzzInvariantException;

namespace Egress.Fuzzing;

/// <summary>
/// enclave.toml bytes as <see cref="EgressConfiguration.Load"/> reads them (<see cref="ConfigurationText.Decode"/>: the
/// text, or an error located inside it at the first byte that is not UTF-8; decoded text equals the bytes read as UTF-8
/// after a byte order mark), then the text (the bytes as UTF-8, invalid sequences replaced) through
/// <see cref="EgressConfiguration.Parse"/>. The contract: a configuration, or a <see cref="ConfigurationException"/> located inside the text (line 0 only
/// for a value the file does not set); nothing else escapes (not a Tomlyn exception, not an overflow). The policy
/// digest (which parses every destination entry) is the same when the text is read twice, and every destination's
/// recorded location is inside the text.
/// </summary>
internal static class ConfigurationTarget
{
    private const string SourceName = "fuzz.toml";

    public static FuzzVerdict Run(byte[] input)
    {
        string text = Encoding.UTF8.GetString(input);
        int lines = 1 + text.Count(c => c == '\n');
        try
        {
            string decoded = ConfigurationText.Decode(input, SourceName);
            int bom = input is [0xEF, 0xBB, 0xBF, ..] ? 3 : 0;
            Require(decoded == Encoding.UTF8.GetString(input, bom, input.Length - bom), "decoded text differs from the bytes read as UTF-8");
        }
        catch (ConfigurationException exception)
        {
            Require(exception.SourceName == SourceName && exception.Line >= 1 && exception.Line <= lines && exception.Column >= 1, $"decode error located outside the text: {exception.Message}");
        }

        EgressConfiguration configuration;
        PolicyDigest digest;
        try
        {
            configuration = EgressConfiguration.Parse(text, SourceName);
            digest = PolicyDigest.Compute(configuration);
        }
        catch (ConfigurationException exception)
        {
            Require(exception.SourceName == SourceName && exception.Line >= 0 && exception.Line <= lines && exception.Column >= 0, $"error located outside the text: {exception.Message}");
            Require(exception.Problem.Length > 0, "error without a problem");
            return FuzzVerdict.Rejected;
        }

        Require(PolicyDigest.Compute(EgressConfiguration.Parse(text, SourceName)).Hash == digest.Hash, "the same text gives two policies");
        Require(digest.DestinationCount <= configuration.Egress.Destinations.Count, "the digest counts destinations the file does not list");
        for (int i = 0; i < configuration.Egress.Destinations.Count; i++)
        {
            SourceLocation? location = configuration.GetLocation("egress.destinations", i);
            Require(location is { } at && at.Line >= 1 && at.Line <= lines, $"destination {i} located outside the text");
        }

        return FuzzVerdict.Accepted;
    }
}
