using System.Text;
using Egress.Tls;

namespace Egress.Tests.Tls;

public sealed class ClientHelloParserTests
{
    private static readonly byte[] OpenSsl = ClientHelloVectors.Read("openssl-s_client-www.allowed.test");

    private static (ClientHelloStatus Status, ClientHello Hello) Parse(byte[] bytes) =>
        (ClientHelloParser.Parse(bytes, out ClientHello hello), hello);

    [TestCase("openssl-s_client-www.allowed.test", "www.allowed.test", TestName = "OpenSSL 3.0 s_client -servername www.allowed.test")]
    [TestCase("curl-evil.test", "evil.test", TestName = "curl --resolve evil.test")]
    [TestCase("openssl-tls12-no-sni", null, TestName = "OpenSSL s_client -tls1_2 -noservername")]
    [TestCase("pq-x25519mlkem768-www.allowed.test", "www.allowed.test", TestName = "X25519MLKEM768 key share, two records")]
    [TestCase("split-records-100", "www.allowed.test", TestName = "Records of 100 bytes")]
    [TestCase("split-records-1", "www.allowed.test", TestName = "Records of 1 byte, then one")]
    public void ReadsTheServerNameOfACapturedClientHello(string file, string? serverName)
    {
        var (status, hello) = Parse(ClientHelloVectors.Read(file));

        Assert.That(status, Is.EqualTo(ClientHelloStatus.ClientHello));
        Assert.That(hello, Is.EqualTo(new ClientHello(serverName, false)));
    }

    [Test]
    public void APostQuantumClientHelloIsLargerThanOneSegment()
    {
        byte[] pq = ClientHelloVectors.Read("pq-x25519mlkem768-www.allowed.test");

        Assert.That(pq, Has.Length.GreaterThan(1460), "larger than one Ethernet TCP segment");
        Assert.That(ClientHelloParser.Parse(pq.AsSpan(0, 1460), out _), Is.EqualTo(ClientHelloStatus.NeedMore));
    }

    [Test]
    public void EveryPrefixNeedsMoreAndTheWholeDecides()
    {
        foreach (string file in new[] { "openssl-s_client-www.allowed.test", "pq-x25519mlkem768-www.allowed.test", "split-records-1" })
        {
            byte[] bytes = ClientHelloVectors.Read(file);
            for (int cut = 0; cut < bytes.Length; cut++)
            {
                Assert.That(ClientHelloParser.Parse(bytes.AsSpan(0, cut), out _), Is.EqualTo(ClientHelloStatus.NeedMore), $"{file}, first {cut} bytes");
            }
        }
    }

    [Test]
    public void AnyRecordSizeGivesTheSameServerName()
    {
        byte[] handshake = ClientHelloVectors.Handshake(OpenSsl);
        for (int size = 1; size <= handshake.Length; size++)
        {
            var (status, hello) = Parse(ClientHelloVectors.Records(handshake, size));
            Assert.That((status, hello.ServerName), Is.EqualTo((ClientHelloStatus.ClientHello, "www.allowed.test")), $"records of {size} bytes");
        }
    }

    [Test]
    public void BytesAfterTheClientHelloDoNotMatter()
    {
        var (status, hello) = Parse([.. OpenSsl, 0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3]);

        Assert.That((status, hello.ServerName), Is.EqualTo((ClientHelloStatus.ClientHello, "www.allowed.test")));
    }

    [Test]
    public void EncryptedClientHelloIsReportedWithItsOuterName()
    {
        var (status, hello) = Parse(ClientHelloVectors.Read("ech-outer-public.allowed.test"));

        Assert.That(status, Is.EqualTo(ClientHelloStatus.ClientHello));
        Assert.That(hello, Is.EqualTo(new ClientHello("public.allowed.test", true)));
    }

    [Test]
    public void AClientHelloWithoutExtensionsHasNoServerName()
    {
        byte[] handshake = ClientHelloVectors.Handshake(ClientHelloVectors.WithExtensions());
        byte[] withoutBlock = [1, 0, 0, (byte)(handshake.Length - 6), .. handshake.AsSpan(4, handshake.Length - 6)];

        var (status, hello) = Parse(ClientHelloVectors.Records(withoutBlock, 16384));

        Assert.That((status, hello), Is.EqualTo((ClientHelloStatus.ClientHello, new ClientHello(null, false))));
    }

    [TestCase("WWW.Allowed.Test", "www.allowed.test")]
    [TestCase("a_b-c.example", "a_b-c.example")]
    // A new user's trial: Python's ssl sends "server_hostname" as given, trailing dot included, and such a ClientHello
    // was refused as malformed (nginx, straight, accepts it). The same name without its dot.
    [TestCase("www.allowed.test.", "www.allowed.test")]
    [TestCase("WWW.Allowed.Test.", "www.allowed.test")]
    public void TheServerNameIsLowerCased(string written, string read)
    {
        var (_, hello) = Parse(ClientHelloVectors.WithExtensions((0, ClientHelloVectors.ServerName(Encoding.ASCII.GetBytes(written)))));

        Assert.That(hello.ServerName, Is.EqualTo(read));
    }

    [TestCase("www.allowed.test..", TestName = "Two trailing dots")]
    [TestCase(".", TestName = "The root alone")]
    [TestCase(".allowed.test", TestName = "Leading dot")]
    [TestCase("www..allowed.test", TestName = "Empty label")]
    [TestCase("www.allowed.test\0.evil.test", TestName = "NUL byte")]
    [TestCase("www.allowed.test evil", TestName = "Space")]
    [TestCase("", TestName = "Empty name")]
    [TestCase("ü.example", TestName = "Not ASCII")]
    public void AnInvalidHostNameIsMalformed(string name)
    {
        var (status, _) = Parse(ClientHelloVectors.WithExtensions((0, ClientHelloVectors.ServerName(Encoding.UTF8.GetBytes(name)))));

        Assert.That(status, Is.EqualTo(ClientHelloStatus.Malformed));
    }

    [Test]
    public void ALabelOver63BytesOrANameOver253IsMalformed()
    {
        string longLabel = new string('a', 64) + ".test";
        string longName = string.Join('.', Enumerable.Repeat(new string('a', 63), 4)); // 255 bytes

        Assert.Multiple(() =>
        {
            Assert.That(Parse(ClientHelloVectors.WithExtensions((0, ClientHelloVectors.ServerName(Encoding.ASCII.GetBytes(longLabel))))).Status, Is.EqualTo(ClientHelloStatus.Malformed));
            Assert.That(Parse(ClientHelloVectors.WithExtensions((0, ClientHelloVectors.ServerName(Encoding.ASCII.GetBytes(longName))))).Status, Is.EqualTo(ClientHelloStatus.Malformed));
        });
    }

    [TestCase("two-host-names", TestName = "Two host_name entries")]
    [TestCase("duplicate-extension", TestName = "An extension twice")]
    [TestCase("hostile-record-length", TestName = "Record length 65535 (over 2^14)")]
    [TestCase("alert-between-records", TestName = "An alert record inside the ClientHello")]
    public void AHostileSeedIsMalformed(string file)
    {
        Assert.That(Parse(ClientHelloVectors.Read(file)).Status, Is.EqualTo(ClientHelloStatus.Malformed));
    }

    [TestCase(new byte[] { 22, 3, 1, 0, 0 }, TestName = "Zero-length record")]
    [TestCase(new byte[] { 22, 2, 0 }, TestName = "SSL 2 record version")]
    [TestCase(new byte[] { 22, 3, 1, 0, 4, 2, 0, 0, 41 }, TestName = "A ServerHello")]
    [TestCase(new byte[] { 22, 3, 1, 0, 4, 1, 0, 0, 40 }, TestName = "A ClientHello shorter than its fixed fields")]
    public void AMalformedStartIsMalformed(byte[] bytes)
    {
        Assert.That(Parse(bytes).Status, Is.EqualTo(ClientHelloStatus.Malformed));
    }

    [Test]
    public void ALengthInsideTheClientHelloBeyondItsEndIsMalformed()
    {
        byte[] handshake = ClientHelloVectors.Handshake(OpenSsl);
        int failures = 0;
        for (int at = 4 + 34; at < handshake.Length; at++)
        {
            // Every byte raised to 0xff: a length that then points beyond its container must not be read past it.
            byte[] changed = (byte[])handshake.Clone();
            changed[at] = 0xff;
            ClientHelloStatus status = ClientHelloParser.Parse(ClientHelloVectors.Records(changed, 16384), out _);
            Assert.That(status, Is.AnyOf(ClientHelloStatus.ClientHello, ClientHelloStatus.Malformed), $"byte {at}");
            failures += status == ClientHelloStatus.Malformed ? 1 : 0;
        }

        Assert.That(failures, Is.GreaterThan(10), "length bytes changed are noticed");
    }

    [Test]
    public void AHandshakeLengthOver16KiBIsTooLarge()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Parse(ClientHelloVectors.Read("hostile-handshake-length")).Status, Is.EqualTo(ClientHelloStatus.TooLarge));
            Assert.That(Parse([22, 3, 1, 0, 4, 1, 0, 0x40, 0x00]).Status, Is.EqualTo(ClientHelloStatus.TooLarge), "16 KiB of body and the header");
            Assert.That(Parse([22, 3, 1, 0, 4, 1, 0, 0x3f, 0xfc]).Status, Is.EqualTo(ClientHelloStatus.NeedMore), "exactly 16 KiB in all");
        });
    }

    [Test]
    public void RecordsBeyond32KiBAreTooLarge()
    {
        // A 16 KiB ClientHello in 1-byte records takes 6 bytes per byte: the records pass 32 KiB first.
        byte[] handshake = new byte[ClientHelloParser.MaxHandshakeLength];
        handshake[0] = 1;
        handshake[2] = 0x3f;
        handshake[3] = 0xfc;
        byte[] records = ClientHelloVectors.Records(handshake, 1);

        Assert.That(ClientHelloParser.Parse(records, out _), Is.EqualTo(ClientHelloStatus.TooLarge));
        Assert.That(ClientHelloParser.Parse(records.AsSpan(0, ClientHelloParser.MaxBytes), out _), Is.EqualTo(ClientHelloStatus.NeedMore));
    }

    [TestCase("not-tls-http")]
    [TestCase("not-tls-ssh")]
    public void AFirstByteOtherThan22IsNotTls(string file)
    {
        Assert.That(Parse(ClientHelloVectors.Read(file)).Status, Is.EqualTo(ClientHelloStatus.NotTls));
    }

    /// <summary>From a new user's trial: an SSL 2.0-format CLIENT-HELLO (first byte 0x80) was read as plain text and
    /// passed under "require"; it has no server name, and a TLS 1.0 server may accept it.</summary>
    [Test]
    public void AnSsl2FormatClientHelloIsAClientHelloWithoutAServerName()
    {
        // RFC 5246 E.2: length 0x8025 (high bit), msg_type 1, version 3.1, cipher_spec_length 12, session_id 0, challenge 16
        byte[] hello = [0x80, 0x25, 0x01, 0x03, 0x01, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x10, .. new byte[12], .. new byte[16]];
        Assert.Multiple(() =>
        {
            Assert.That(Parse(hello), Is.EqualTo((ClientHelloStatus.ClientHello, new ClientHello(null, false))));
            Assert.That(Parse(hello[..2]).Status, Is.EqualTo(ClientHelloStatus.NeedMore));
            Assert.That(Parse([0x80, 0x25, 0x02]).Status, Is.EqualTo(ClientHelloStatus.NotTls), "another SSL 2.0 message, or a binary protocol");
            Assert.That(ServerNameCheck.Decide(TlsServerNameMode.Require, ClientHelloStatus.ClientHello, new ClientHello(null, false), ["www.allowed.test"], _ => true),
                Is.EqualTo(ServerNameRefusal.NoServerName));
        });
    }

    /// <summary>From a red-team trial: a TLS alert record (warning, user_canceled) sent before the ClientHello made the
    /// first byte 21, read as plain text, so the ClientHello behind it passed unchecked. Go's crypto/tls server (and
    /// other stacks) skips a warning alert before the handshake and reads the ClientHello that follows: another
    /// tenant's server name reached a learned address. A TLS record of another type first is refused as malformed.</summary>
    [TestCase((byte)20, TestName = "change_cipher_spec before the ClientHello")]
    [TestCase((byte)21, TestName = "alert before the ClientHello")]
    [TestCase((byte)23, TestName = "application_data before the ClientHello")]
    [TestCase((byte)24, TestName = "heartbeat before the ClientHello")]
    [TestCase((byte)25, TestName = "tls12_cid before the ClientHello")]
    public void AnotherTlsRecordBeforeTheClientHelloIsMalformed(byte type)
    {
        byte[] alert = [type, 0x03, 0x01, 0x00, 0x02, 0x01, 0x5a];
        Assert.Multiple(() =>
        {
            Assert.That(Parse([.. alert, .. OpenSsl]).Status, Is.EqualTo(ClientHelloStatus.Malformed));
            Assert.That(Parse(alert[..1]).Status, Is.EqualTo(ClientHelloStatus.NeedMore), "one byte: a record or plain text");
            Assert.That(Parse([type, (byte)'x']).Status, Is.EqualTo(ClientHelloStatus.NotTls), "no TLS version byte: plain text");
        });
    }

    /// <summary>A binary protocol whose first bytes are a little-endian length, such as MongoDB's wire protocol (a first
    /// message of 276 bytes starts 14 01 00 00, of 277 bytes 15 01 00 00), is not a TLS record any server takes: Go
    /// takes a first record of version below 0x1000 only as an alert, and skips only a 2-byte one; the others need
    /// TLS's major version 3. Refusing them refused every such connection to a learned address.</summary>
    [TestCase(new byte[] { 0x14, 0x01, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00 }, TestName = "a 276-byte MongoDB message")]
    [TestCase(new byte[] { 0x15, 0x01, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00 }, TestName = "a 277-byte MongoDB message")]
    [TestCase(new byte[] { 0x18, 0x0a, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00 }, TestName = "a 2584-byte MongoDB message")]
    public void ALittleEndianLengthIsPlainText(byte[] first)
    {
        Assert.That(Parse(first).Status, Is.EqualTo(ClientHelloStatus.NotTls));
    }

    /// <summary>The review of that fix: Go's crypto/tls takes a first alert record of any version below 0x1000
    /// (conn.go: "first record does not look like a TLS handshake" only from 0x1000 on), so an alert with version
    /// 0x0001 before the ClientHello was still read as plain text and passed unchecked.</summary>
    [TestCase((byte)0x00, ClientHelloStatus.Malformed)]
    [TestCase((byte)0x01, ClientHelloStatus.Malformed)]
    [TestCase((byte)0x0F, ClientHelloStatus.Malformed)]
    [TestCase((byte)0x10, ClientHelloStatus.NotTls)]
    [TestCase((byte)0x20, ClientHelloStatus.NotTls)]
    public void AnAlertFirstIsMalformedForEveryVersionAServerMayTake(byte major, object expected)
    {
        byte[] alert = [21, major, 0x01, 0x00, 0x02, 0x01, 0x5a];

        Assert.That(Parse([.. alert, .. OpenSsl]).Status, Is.EqualTo((ClientHelloStatus)expected));
    }

    [Test]
    public void NoBytesNeedMore()
    {
        Assert.That(Parse([]).Status, Is.EqualTo(ClientHelloStatus.NeedMore));
    }

    /// <summary>Inputs for the resumed parse: captured ClientHellos, the same in records of 1, 7 and 300 bytes, and
    /// mutations of them (a wrong record type or version later on, a record over 2^14, a handshake that is no ClientHello,
    /// one too large, a zero-length record), each fed a prefix at a time.</summary>
    private static IEnumerable<(string Name, byte[] Bytes)> ResumedInputs()
    {
        foreach (string file in ClientHelloVectors.Names)
        {
            yield return (file, ClientHelloVectors.Read(file));
        }

        foreach (string file in new[] { "openssl-s_client-www.allowed.test", "curl-evil.test", "pq-x25519mlkem768-www.allowed.test" })
        {
            byte[] handshake = ClientHelloVectors.Handshake(ClientHelloVectors.Read(file));
            foreach (int size in new[] { 1, 7, 300 })
            {
                byte[] records = ClientHelloVectors.Records(handshake, size);
                yield return ($"{file} in records of {size}", records);
                foreach (int at in new[] { 5 * (size + 5), 40 * (size + 5) })
                {
                    if (at + 5 < records.Length)
                    {
                        yield return ($"{file}, {size}: type 23 at {at}", With(records, at, 23));
                        yield return ($"{file}, {size}: version 2 at {at}", With(records, at + 1, 2));
                        yield return ($"{file}, {size}: zero length at {at}", With(With(records, at + 3, 0), at + 4, 0));
                        yield return ($"{file}, {size}: length over 2^14 at {at}", With(records, at + 3, 0x41));
                    }
                }
            }
        }

        byte[] other = ClientHelloVectors.Records(ClientHelloVectors.Handshake(OpenSsl), 1);
        yield return ("server hello in 1-byte records", With(other, 5, 2));
        yield return ("a 16 MiB handshake in 1-byte records", With(other, 6 + 5, 0xFF));
        byte[] random = new byte[4000];
        new Random(11).NextBytes(random);
        random[0] = 22;
        random[1] = 3;
        yield return ("random after a handshake record header", random);
    }

    private static byte[] With(byte[] bytes, int at, byte value)
    {
        byte[] changed = (byte[])bytes.Clone();
        changed[at] = value;
        return changed;
    }

    // A red-team trial: each receive parsed from the first record again, so a ClientHello in 1-byte records sent a byte at
    // a time cost the parent work in the square of its length. The parse now goes on from the last whole record; it must
    // decide every prefix as a parse from the start does.
    [Test]
    public void AParseThatGoesOnFromTheLastWholeRecordDecidesEveryPrefixAsAParseFromTheStart()
    {
        int inputs = 0;
        foreach (var (name, bytes) in ResumedInputs())
        {
            inputs++;
            ClientHelloScan scan = default;
            for (int length = 1; length <= bytes.Length; length++)
            {
                ClientHelloStatus fromStart = ClientHelloParser.Parse(bytes.AsSpan(0, length), out ClientHello helloFromStart);
                ClientHelloStatus resumed = ClientHelloParser.Parse(bytes.AsSpan(0, length), ref scan, out ClientHello helloResumed);
                if ((resumed, helloResumed) != (fromStart, helloFromStart))
                {
                    Assert.Fail($"{name}, first {length} bytes: resumed {resumed} {helloResumed}, from the start {fromStart} {helloFromStart}");
                }

                if (fromStart != ClientHelloStatus.NeedMore)
                {
                    break; // a caller stops at the first decision
                }
            }
        }

        Assert.That(inputs, Is.GreaterThan(50));
    }

    // A review: a scan past the end of the bytes given (a caller breaking the precondition) must not throw: the parse
    // starts again from the first byte.
    [Test]
    public void AScanPastTheBytesGivenStartsFromTheFirstByteInsteadOfThrowing()
    {
        byte[] records = ClientHelloVectors.Records(ClientHelloVectors.Handshake(OpenSsl), 1);
        ClientHelloScan scan = default;
        ClientHelloParser.Parse(records.AsSpan(0, 600), ref scan, out _);

        ClientHelloStatus status = ClientHelloParser.Parse(records.AsSpan(0, 100), ref scan, out _);

        Assert.That(status, Is.EqualTo(ClientHelloStatus.NeedMore));
        Assert.That(scan.Offset, Is.EqualTo(96), "16 whole records of 6 bytes walked from the start");
    }

    [Test]
    public void AResumedParseStandsAtTheFirstRecordNotYetWhole()
    {
        byte[] records = ClientHelloVectors.Records(ClientHelloVectors.Handshake(OpenSsl), 1); // 6 bytes a record
        ClientHelloScan scan = default;

        Assert.That(ClientHelloParser.Parse(records.AsSpan(0, 6 * 100 + 3), ref scan, out _), Is.EqualTo(ClientHelloStatus.NeedMore));
        Assert.That((scan.Offset, scan.Records, scan.Collected), Is.EqualTo((600, 100, 100)), "100 records walked, the 101st not whole");

        Assert.That(ClientHelloParser.Parse(records.AsSpan(0, 6 * 101), ref scan, out _), Is.EqualTo(ClientHelloStatus.NeedMore));
        Assert.That(scan.Offset, Is.EqualTo(606));
    }
}
