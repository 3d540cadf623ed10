using System.Text;
using Egress.Policy;
using FsCheck;
using FsCheck.Fluent;

namespace Egress.Tests.Policy;

public sealed class PublicSuffixListTests
{
    private const string Sample = "// comment\n\nuk\nco.uk\n*.ck\n!www.ck\n// ===BEGIN PRIVATE DOMAINS===\ngithub.io\n";

    private static bool IsPublicSuffix(string list, string domain) => PublicSuffixList.Find(Encoding.UTF8.GetBytes(list), domain).IsPublicSuffix;

    private static List<string> Below(string list, string domain) => PublicSuffixList.Find(Encoding.UTF8.GetBytes(list), domain).SuffixesBelow;

    [TestCase("co.uk", true)]
    [TestCase("CO.UK", true)]
    [TestCase("github.io", true)]
    [TestCase("example.co.uk", false)]
    [TestCase("anything.ck", true)] // by *.ck
    [TestCase("www.ck", false)] // the exception !www.ck
    [TestCase("a.anything.ck", false)] // *.ck covers one label only
    [TestCase("ck", false)] // not by *.ck, and no rule of its own
    [TestCase("comment", false)]
    [TestCase("o.uk", false)] // labels, not text
    public void ReadsNormalWildcardAndExceptionRulesAndSkipsComments(string domain, bool expected)
    {
        Assert.That(PublicSuffixList.CountRules(Encoding.UTF8.GetBytes(Sample)), Is.EqualTo(5));
        Assert.That(IsPublicSuffix(Sample, domain), Is.EqualTo(expected));
    }

    [Test]
    public void ARuleIsTheTextBeforeWhiteSpaceAndCrLfLinesReadAlike()
    {
        const string List = "  co.uk  trailing words\r\n\tgithub.io\r\nblogspot.com\t// note\r\nlast.example";

        Assert.That(new[] { "co.uk", "github.io", "blogspot.com", "last.example" }.Select(d => IsPublicSuffix(List, d)), Is.All.True);
        Assert.That(PublicSuffixList.CountRules(Encoding.UTF8.GetBytes(List)), Is.EqualTo(4));
    }

    [Test]
    public void InternationalizedRulesAreComparedInTheirALabelForm()
    {
        const string List = "公司.cn\n*.bücher.example\n";

        Assert.Multiple(() =>
        {
            Assert.That(IsPublicSuffix(List, "xn--55qx5d.cn"), Is.True);
            Assert.That(IsPublicSuffix(List, "a.xn--bcher-kva.example"), Is.True);
            Assert.That(Below(List, "example"), Is.EqualTo(new[] { "*.xn--bcher-kva.example" }));
        });
    }

    [TestCase(".co.uk")]
    [TestCase("co.uk.")]
    [TestCase("!")]
    [TestCase("*.")]
    [TestCase("a\u0000b.com")]
    [TestCase("a..b")]
    [TestCase("a_b.com")]
    [TestCase("a/b")]
    public void AMalformedRuleIsSkipped(string rule) =>
        Assert.That(PublicSuffixList.CountRules(Encoding.UTF8.GetBytes(rule + "\nco.uk\n")), Is.EqualTo(1));

    [Test]
    public void AnyBytesAreReadWithoutThrowing() =>
        Prop.ForAll(
            ArbMap.Default.ArbFor<byte[]>().Filter(bytes => bytes is not null),
            ArbMap.Default.ArbFor<string>().Filter(text => text is not null),
            (byte[] noise, string text) =>
            {
                byte[] list = [.. noise, .. Encoding.UTF8.GetBytes("\n" + text + "\nzz.example\n")];
                return PublicSuffixList.Find(list, "zz.example").IsPublicSuffix && PublicSuffixList.CountRules(list) >= 1;
            })
            .QuickCheckThrowOnFailure();

    [Test]
    public void SuffixesBelowADomainComeShortestFirstWithWildcardRulesWritten()
    {
        const string List = "amazonaws.com.cn\ns3.amazonaws.com\n*.compute.amazonaws.com\nelb.amazonaws.com\nexample.com\n";

        Assert.Multiple(() =>
        {
            Assert.That(Below(List, "amazonaws.com"), Is.EqualTo(new[] { "s3.amazonaws.com", "elb.amazonaws.com", "*.compute.amazonaws.com" }));
            Assert.That(Below(List, "compute.amazonaws.com"), Is.EqualTo(new[] { "*.compute.amazonaws.com" }), "its own wildcard rule");
            Assert.That(Below(List, "com"), Has.Count.EqualTo(4));
            Assert.That(Below(List, "example.com"), Is.Empty, "a rule for the domain itself is not below it");
            Assert.That(Below(List, "ws.com"), Is.Empty, "labels, not text: amazonaws.com does not end in .ws.com");
        });
    }

    [TestCase("s3.us-east-1.amazonaws.com", true)]
    [TestCase("S3.EU-South-9.AmazonAWS.com", true)] // a {region} label matches any region's name, in any case
    [TestCase("s3.us-gov-west-1.amazonaws.com", true)]
    [TestCase("s3.cn-northwest-1.amazonaws.com.cn", true)]
    [TestCase("s3.a.b.amazonaws.com", false)] // one label only
    [TestCase("s3.sts.amazonaws.com", false)] // a review: "sts" is no region
    [TestCase("z13.web.core.windows.net", true)] // a * label matches any one label
    [TestCase("my-bucket.s3.us-east-1.amazonaws.com", false)] // a name under it, not the suffix
    [TestCase("blob.core.windows.net", true)]
    public void AdditionsMatchLabelByLabel(string domain, bool expected)
    {
        var finding = PublicSuffixList.FindInAdditions(domain);

        Assert.That((finding.IsPublicSuffix, finding.FromAdditions), Is.EqualTo((expected, expected)));
    }

    [Test]
    public void AdditionsBelowADomainAreNamedWithTheirWildcardLabels()
    {
        Assert.That(PublicSuffixList.FindInAdditions("on.aws").SuffixesBelow, Is.EqualTo(new[] { "lambda-url.{region}.on.aws" }));
        Assert.That(PublicSuffixList.FindInAdditions("us-east-1.amazonaws.com").SuffixesBelow, Has.Count.EqualTo(9).And.Contains("s3.{region}.amazonaws.com"));
        Assert.That(PublicSuffixList.FindInAdditions("amazonaws.com").SuffixesBelow[0], Is.EqualTo("s3.{region}.amazonaws.com"), "shortest first");
        // A review: a {region} or * label inside the domain's own labels matched any label, so these were said to hold
        // S3's suffixes.
        Assert.That(new[] { "sts.amazonaws.com", "rds.amazonaws.com", "execute-api.amazonaws.com" }.Select(d => PublicSuffixList.FindInAdditions(d).SuffixesBelow.Count), Is.All.Zero);
        var none = PublicSuffixList.FindInAdditions("example.com");
        Assert.That((none.IsPublicSuffix, none.SuffixesBelow.Count, none.FromAdditions), Is.EqualTo((false, 0, false)));
    }

    [Test]
    public void TheShippedListIsTheWholeListOfItsDay()
    {
        Assert.That(PublicSuffixList.CountRules(PublicSuffixList.ShippedText()), Is.GreaterThan(9000));
        Assert.Multiple(() =>
        {
            Assert.That(PublicSuffixList.FindShipped("co.uk").IsPublicSuffix, Is.True, "ICANN section");
            Assert.That(PublicSuffixList.FindShipped("s3.amazonaws.com").IsPublicSuffix, Is.True, "private section");
            Assert.That(PublicSuffixList.FindShipped("city.kawasaki.jp").IsPublicSuffix, Is.False, "exception");
            Assert.That(PublicSuffixList.FindShipped("ward.kawasaki.jp").IsPublicSuffix, Is.True, "wildcard");
            Assert.That(PublicSuffixList.FindShipped("xn--55qx5d.cn").IsPublicSuffix, Is.True, "an IDN rule");
            Assert.That(PublicSuffixList.FindShipped("example.com").IsPublicSuffix, Is.False);
        });
    }
}
