using Egress.Tls;

namespace Egress.Tests.Tls;

public sealed class ServerNameCheckTests
{
    private static readonly string[] Learned = ["www.allowed.test", "allowed.test"];

    private static ServerNameRefusal Decide(TlsServerNameMode mode, ClientHelloStatus status, string? name = null, bool ech = false) =>
        ServerNameCheck.Decide(mode, status, new ClientHello(name, ech), Learned, name => name.EndsWith("allowed.test", StringComparison.Ordinal) || name == "other.test");

    [TestCase(TlsServerNameMode.Require, "www.allowed.test", "None")]
    [TestCase(TlsServerNameMode.Require, "allowed.test", "None")]
    [TestCase(TlsServerNameMode.Require, "evil.test", "NotAllowed")]
    [TestCase(TlsServerNameMode.Require, "other.test", "NotLearned")]
    [TestCase(TlsServerNameMode.Require, "api.allowed.test", "NotLearned")]
    [TestCase(TlsServerNameMode.Require, null, "NoServerName")]
    [TestCase(TlsServerNameMode.IfPresent, null, "None")]
    [TestCase(TlsServerNameMode.IfPresent, "other.test", "NotLearned")]
    [TestCase(TlsServerNameMode.Off, "evil.test", "None")]
    public void AClientHelloMustNameALearnedAllowedName(TlsServerNameMode mode, string? name, string expected)
    {
        Assert.That(Decide(mode, ClientHelloStatus.ClientHello, name).ToString(), Is.EqualTo(expected));
    }

    /// <summary>Report mode: a name the address was not learned from is reported as such even when no entry allows it,
    /// since an entry for it would not let enforce relay it (report-to-allowlist proposes the address instead).</summary>
    [TestCase("evil.test", "NotLearned")]
    [TestCase("other.test", "NotLearned")]
    [TestCase("www.allowed.test", "None")]
    public void InReportModeANameNotLearnedIsReportedAsNotLearnedFirst(string name, string expected)
    {
        var reported = ServerNameCheck.Decide(
            TlsServerNameMode.Require, ClientHelloStatus.ClientHello, new ClientHello(name, false), Learned, name => name == "other.test" || name == "www.allowed.test", reportOnly: true);

        Assert.That(reported.ToString(), Is.EqualTo(expected));
    }

    [TestCase(TlsServerNameMode.Require)]
    [TestCase(TlsServerNameMode.IfPresent)]
    public void EncryptedClientHelloIsRefusedEvenWithALearnedOuterName(TlsServerNameMode mode)
    {
        Assert.That(Decide(mode, ClientHelloStatus.ClientHello, "www.allowed.test", ech: true), Is.EqualTo(ServerNameRefusal.EncryptedClientHello));
    }

    [TestCase("NotTls", "None")]
    [TestCase("Malformed", "Malformed")]
    [TestCase("TooLarge", "TooLarge")]
    [TestCase("NeedMore", "Truncated")]
    public void WhatIsNotAClientHello(string statusName, string expected)
    {
        var status = Enum.Parse<ClientHelloStatus>(statusName);
        Assert.Multiple(() =>
        {
            Assert.That(Decide(TlsServerNameMode.Require, status).ToString(), Is.EqualTo(expected));
            Assert.That(Decide(TlsServerNameMode.IfPresent, status).ToString(), Is.EqualTo(expected));
            Assert.That(Decide(TlsServerNameMode.Off, status), Is.EqualTo(ServerNameRefusal.None));
        });
    }

    [TestCase("WWW.Allowed.Test", "www.allowed.test", true)]
    [TestCase("www.allowed.test.", "www.allowed.test", true)]
    [TestCase("www.allowed.test", "www.allowed.tes", false)]
    public void NamesCompareAsDns(string a, string b, bool same)
    {
        Assert.That(ServerNameCheck.SameName(a, b), Is.EqualTo(same));
    }
}
