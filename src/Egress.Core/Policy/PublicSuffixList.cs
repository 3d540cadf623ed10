using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Egress.Policy;

/// <summary>
/// The Public Suffix List (https://publicsuffix.org/list/): the domains under which anyone can register or create
/// names, from <c>com</c> and <c>co.uk</c> to <c>s3.amazonaws.com</c> and <c>github.io</c>. The policy uses it to warn
/// about a wildcard entry that lets a dependency reach names of its own choosing (<c>*.s3.amazonaws.com</c> allows an
/// attacker's bucket). Rules follow the list's format: one per line (the text before the first white space), normal
/// (<c>co.uk</c>), wildcard (<c>*.ck</c>: every name one label below is a suffix) and exception (<c>!www.ck</c>: not
/// one); <c>//</c> comments; internationalized rules compared in their A-label (<c>xn--</c>) form, as entries are
/// written. A rule that is not a host name (letters, digits, hyphens, dots between non-empty labels) is skipped.
/// </summary>
/// <remarks>
/// The shipped copy is <c>Policy/public_suffix_list.dat</c> in this assembly (MPL 2.0, from Debian's
/// <c>publicsuffix</c> 20230209.2326-1; THIRD-PARTY-NOTICES.md): names added to the list since are not known. It is
/// scanned in place, where the assembly maps it, for each question (a quarter of a megabyte), and nothing of it is
/// kept: measured on the Native AOT egress-enclave (with the additions below), 13 wildcard entries add 0.4–0.6 MB of
/// resident memory and about 10 ms to its start.
/// </remarks>
internal static class PublicSuffixList
{
    /// <summary>The date of the shipped copy, for messages.</summary>
    internal const string ShippedVersion = "2023-02-09";

    private const string ResourceName = "Egress.Policy.public_suffix_list.dat";

    /// <summary>
    /// Egress's own additions, checked with the shipped list: endpoints of shared storage and API services where anyone
    /// can create a name, which the list of 2023-02-09 names for a few regions only or not at all (a review found
    /// <c>*.s3.us-east-1.amazonaws.com</c> unwarned). A <c>{region}</c> label matches an AWS region's name
    /// (<see cref="RegionLabel"/>: AWS adds regions), a <c>*</c> label any one label.
    /// </summary>
    internal static readonly string[] Additions =
    [
        .. new[] { "amazonaws.com", "amazonaws.com.cn" }.SelectMany(aws => new[]
        {
            $"s3.{{region}}.{aws}", // BUCKET.s3.REGION.amazonaws.com
            $"s3.dualstack.{{region}}.{aws}",
            $"s3-fips.{{region}}.{aws}",
            $"s3-fips.dualstack.{{region}}.{aws}",
            $"s3-website.{{region}}.{aws}",
            $"s3-accesspoint.{{region}}.{aws}",
            $"s3-accesspoint.dualstack.{{region}}.{aws}",
            $"s3-object-lambda.{{region}}.{aws}",
            $"execute-api.{{region}}.{aws}", // API Gateway: ID.execute-api.REGION.amazonaws.com
        }),
        "lambda-url.{region}.on.aws", // Lambda function URLs
        "blob.core.windows.net", // Azure Storage: ACCOUNT.blob.core.windows.net
        "dfs.core.windows.net",
        "file.core.windows.net",
        "queue.core.windows.net",
        "table.core.windows.net",
        "*.web.core.windows.net", // static websites: ACCOUNT.zNN.web.core.windows.net
        "storage.googleapis.com", // Cloud Storage: BUCKET.storage.googleapis.com
    ];

    /// <summary>An AWS region's name: <c>us-east-1</c>, <c>eu-central-2</c>, <c>us-gov-west-1</c>, <c>cn-north-1</c>,
    /// <c>us-isob-east-1</c>.</summary>
    private static readonly Regex RegionLabel = new("^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+$", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase);

    private static readonly SearchValues<byte> HostNameBytes = SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-."u8);

    /// <summary>What the list says about one domain.</summary>
    /// <param name="IsPublicSuffix">Whether the domain is itself a public suffix by an explicit rule (the list's implicit
    /// <c>*</c> rule, which makes every top-level domain one, is not counted).</param>
    /// <param name="SuffixesBelow">The rules that make public suffixes strictly below it, in lower case: normal rules
    /// that end in <c>.domain</c>, and wildcard rules at or below it written <c>*.x.domain</c>; shortest first, then in
    /// ordinal order.</param>
    /// <param name="FromList">Whether the list itself says so (the domain is a suffix by it, or some of the suffixes
    /// below it are its rules).</param>
    /// <param name="FromAdditions">Whether <see cref="Additions"/> say so where the list does not.</param>
    internal readonly record struct Finding(bool IsPublicSuffix, List<string> SuffixesBelow, bool FromList = true, bool FromAdditions = false);

    /// <summary>Looks <paramref name="domain"/> up in the shipped list.</summary>
    /// <param name="domain">An ASCII domain name without a trailing dot, e.g. <c>amazonaws.com</c> (case is ignored).</param>
    /// <exception cref="InvalidOperationException">The assembly lacks the list (a build that left it out).</exception>
    internal static unsafe Finding FindShipped(string domain)
    {
        using var stream = typeof(PublicSuffixList).Assembly.GetManifestResourceStream(ResourceName) as UnmanagedMemoryStream
            ?? throw new InvalidOperationException($"the assembly lacks its Public Suffix List resource {ResourceName}");
        Finding listed = Find(new ReadOnlySpan<byte>(stream.PositionPointer, checked((int)stream.Length)), domain);
        Finding added = FindInAdditions(domain);
        if (!added.IsPublicSuffix && added.SuffixesBelow.Count == 0)
        {
            return listed;
        }

        if (listed.IsPublicSuffix)
        {
            return listed; // the list's word is enough
        }

        if (added.IsPublicSuffix)
        {
            return added with { SuffixesBelow = [] };
        }

        var below = listed.SuffixesBelow.Union(added.SuffixesBelow, StringComparer.Ordinal).ToList();
        below.Sort(ShortestFirst);
        return new Finding(false, below, FromList: listed.SuffixesBelow.Count > 0, FromAdditions: true);
    }

    /// <summary>Looks <paramref name="domain"/> up in <see cref="Additions"/> alone: a public suffix when its labels match
    /// one's (a <c>*</c> label matching any, <c>{region}</c> a region's name), holding one when its labels match the end
    /// of a longer one's (<c>*.sts.amazonaws.com</c> holds none: <c>sts</c> is no region).</summary>
    /// <param name="domain">An ASCII domain name without a trailing dot (case is ignored).</param>
    internal static Finding FindInAdditions(string domain)
    {
        ArgumentNullException.ThrowIfNull(domain);
        string[] labels = domain.Split('.');
        bool listed = false;
        var below = new List<string>();
        foreach (string addition in Additions)
        {
            string[] pattern = addition.Split('.');
            if (pattern.Length < labels.Length || !EndsWithLabels(pattern, labels))
            {
                continue;
            }

            if (pattern.Length == labels.Length)
            {
                listed = true;
            }
            else
            {
                below.Add(addition);
            }
        }

        below.Sort(ShortestFirst);
        return new Finding(listed, below, FromList: false, FromAdditions: listed || below.Count > 0);

        static bool EndsWithLabels(string[] pattern, string[] labels)
        {
            int offset = pattern.Length - labels.Length;
            for (int i = 0; i < labels.Length; i++)
            {
                bool matches = pattern[offset + i] switch
                {
                    "*" => true,
                    "{region}" => RegionLabel.IsMatch(labels[i]),
                    string label => string.Equals(label, labels[i], StringComparison.OrdinalIgnoreCase),
                };
                if (!matches)
                {
                    return false;
                }
            }

            return true;
        }
    }

    /// <summary>The shipped list's text, for tests.</summary>
    internal static unsafe byte[] ShippedText()
    {
        using var stream = (UnmanagedMemoryStream)typeof(PublicSuffixList).Assembly.GetManifestResourceStream(ResourceName)!;
        return new ReadOnlySpan<byte>(stream.PositionPointer, checked((int)stream.Length)).ToArray();
    }

    /// <summary>Looks <paramref name="domain"/> up in a list given as UTF-8 text. No text makes it throw.</summary>
    /// <param name="list">The list, UTF-8.</param>
    /// <param name="domain">An ASCII domain name without a trailing dot (case is ignored).</param>
    internal static Finding Find(ReadOnlySpan<byte> list, string domain)
    {
        ArgumentNullException.ThrowIfNull(domain);
        byte[] name = Encoding.ASCII.GetBytes(domain);
        // An internationalized rule (466 of the list's) is converted, which allocates, only when it can matter: in
        // A-label form it ends in the domain's labels only if its raw text does, unless the domain has A-labels itself.
        bool nameHasALabels = domain.Contains("xn--", StringComparison.OrdinalIgnoreCase);
        bool listed = false, excepted = false;
        var below = new List<string>();
        var reader = new RuleReader(list, convert: raw => nameHasALabels || IsBelow(raw, name));
        while (reader.Next(out RuleKind kind, out ReadOnlySpan<byte> rule))
        {
            switch (kind)
            {
                case RuleKind.Exception:
                    excepted |= Ascii.EqualsIgnoreCase(rule, name);
                    break;
                case RuleKind.Normal:
                    listed |= Ascii.EqualsIgnoreCase(rule, name);
                    if (IsBelow(rule, name))
                    {
                        below.Add(Encoding.ASCII.GetString(rule).ToLowerInvariant());
                    }

                    break;
                default:
                    // *.rule: the domain is one label below rule; rule itself (or one below the domain) holds suffixes.
                    int dot = Array.IndexOf(name, (byte)'.');
                    listed |= dot > 0 && Ascii.EqualsIgnoreCase(rule, name.AsSpan(dot + 1));
                    if (Ascii.EqualsIgnoreCase(rule, name) || IsBelow(rule, name))
                    {
                        below.Add("*." + Encoding.ASCII.GetString(rule).ToLowerInvariant());
                    }

                    break;
            }
        }

        below.Sort(ShortestFirst);
        return new Finding(listed && !excepted, below);
    }

    private static int ShortestFirst(string a, string b) => a.Length != b.Length ? a.Length.CompareTo(b.Length) : string.CompareOrdinal(a, b);

    /// <summary>The number of rules in a list given as UTF-8 text.</summary>
    internal static int CountRules(ReadOnlySpan<byte> list)
    {
        int count = 0;
        var reader = new RuleReader(list);
        while (reader.Next(out _, out _))
        {
            count++;
        }

        return count;
    }

    // rule ends in ".name": a name strictly below name.
    private static bool IsBelow(ReadOnlySpan<byte> rule, ReadOnlySpan<byte> name) =>
        rule.Length > name.Length + 1 && rule[rule.Length - name.Length - 1] == (byte)'.'
        && Ascii.EqualsIgnoreCase(rule[(rule.Length - name.Length)..], name);

    private delegate bool RawRuleFilter(ReadOnlySpan<byte> raw);

    private enum RuleKind
    {
        Normal,
        Wildcard,
        Exception,
    }

    /// <summary>The list's rules one at a time, each as ASCII host-name bytes: an internationalized rule converted to
    /// A-labels into a scratch buffer (valid until the next call) when <paramref name="convert"/> says it may matter
    /// (given its raw UTF-8 text; every one when null), else skipped.</summary>
    private ref struct RuleReader(ReadOnlySpan<byte> text, RawRuleFilter? convert = null)
    {
        private ReadOnlySpan<byte> rest = text;
        private IdnMapping? idn;
        private byte[]? scratch;

        public bool Next(out RuleKind kind, out ReadOnlySpan<byte> rule)
        {
            while (!rest.IsEmpty)
            {
                int end = rest.IndexOf((byte)'\n');
                ReadOnlySpan<byte> line = end < 0 ? rest : rest[..end];
                rest = end < 0 ? default : rest[(end + 1)..];

                line = line.TrimStart(" \t\r"u8);
                int space = line.IndexOfAny(" \t\r"u8);
                ReadOnlySpan<byte> token = space < 0 ? line : line[..space];
                if (token.IsEmpty || token.StartsWith("//"u8))
                {
                    continue;
                }

                kind = token[0] == (byte)'!' ? RuleKind.Exception : token.StartsWith("*."u8) ? RuleKind.Wildcard : RuleKind.Normal;
                int skip = kind switch { RuleKind.Exception => 1, RuleKind.Wildcard => 2, _ => 0 };
                token = token[skip..];
                if (!Ascii.IsValid(token) && (convert?.Invoke(token) == false || !ToALabels(token, out token)))
                {
                    continue;
                }

                if (token.IsEmpty || token[0] == (byte)'.' || token[^1] == (byte)'.' || token.IndexOf(".."u8) >= 0
                    || token.ContainsAnyExcept(HostNameBytes))
                {
                    continue;
                }

                rule = token;
                return true;
            }

            kind = default;
            rule = default;
            return false;
        }

        private bool ToALabels(ReadOnlySpan<byte> utf8, out ReadOnlySpan<byte> ascii)
        {
            ascii = default;
            string converted;
            try
            {
                converted = (idn ??= new IdnMapping()).GetAscii(Encoding.UTF8.GetString(utf8));
            }
            catch (ArgumentException)
            {
                return false;
            }

            scratch ??= new byte[256];
            if (converted.Length > scratch.Length || !Ascii.IsValid(converted))
            {
                return false;
            }

            int written = Encoding.ASCII.GetBytes(converted, scratch);
            ascii = scratch.AsSpan(0, written);
            return true;
        }
    }
}
