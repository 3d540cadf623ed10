using System.Net;
using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Policy;
using Egress.Tests.Dns.Vectors;
using FsCheck;
using FsCheck.Fluent;
using Microsoft.Extensions.Logging.Abstractions;

namespace Egress.Tests.Dns;

/// <summary>Random and mutated messages never make a reader throw, and readers keep their contracts.</summary>
public sealed class DnsHostileInputProperties
{
    private static readonly byte[][] Seeds =
    [
        .. new[]
        {
            DnsVectors.ATestAResponse, DnsVectors.WwwBTestAResponse, DnsVectors.MixedCaseAaaaResponse, DnsVectors.DeepBTestAResponse,
            DnsVectors.ManyTestAUdpResponse, DnsVectors.ATestAEdnsResponse, DnsVectors.TxtTestTxtResponse, DnsVectors.ATestAQuery,
            DnsVectors.ManyTestAEdnsQuery, DnsVectors.MixedCaseAaaaQuery,
        }.Select(Convert.FromHexString),
        DnsMessageBuilder.Query(ar: 1).Question("a.test").Opt(1232, 0x8000, 0, 15, 0, 3, 0, 15, 65).ToArray(),
    ];

    [FsCheck.NUnit.Property(MaxTest = 2000)]
    public Property RandomBytesNeverThrow() => Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), CheckEveryReader);

    [FsCheck.NUnit.Property(MaxTest = 2000)]
    public Property RandomBodiesBehindAPlausibleHeaderNeverThrow()
    {
        Gen<byte[]> gen =
            from response in ArbMap.Default.GeneratorFor<bool>()
            from anCount in Gen.Choose(0, 5)
            from arCount in Gen.Choose(0, 2)
            from body in ArbMap.Default.GeneratorFor<byte[]>()
            select (byte[])[0x12, 0x34, response ? (byte)0x81 : (byte)0x01, 0x80, 0, 1, 0, (byte)anCount, 0, 0, 0, (byte)arCount, .. body];

        return Prop.ForAll(gen.ToArbitrary(), CheckEveryReader);
    }

    /// <summary>Well-formed queries with anything a sender may add: any flags, records in every section, an OPT record
    /// with options of any code, bytes after the last record. Each passes the screen, and is forwarded as its question
    /// (<see cref="CheckMinimizedForm"/>).</summary>
    [FsCheck.NUnit.Property(MaxTest = 1000)]
    public Property ScreenedQueriesAreForwardedAsTheirQuestion()
    {
        Gen<byte[]> gen =
            from flags in Gen.Choose(0, 0x07FF)
            from name in Gen.Elements("a.test", "API.Example.COM", "x", "a-b.c-d.e")
            from type in Gen.Choose(1, 65535)
            from extra in Gen.Choose(0, 3)
            from edns in ArbMap.Default.GeneratorFor<bool>()
            from ttl in Gen.Elements(0u, 0x8000u, 0x7FFFu, 0xFF00FFFFu & ~0x00FF0000u)
            from payload in Gen.Choose(0, 65535)
            from options in Gen.Choose(0, 3).SelectMany(count => Gen.Zip(Gen.Choose(0, 65535), Gen.Choose(0, 300)).ArrayOf(count))
            from trailing in ArbMap.Default.GeneratorFor<byte[]>()
            select Query(flags, name, type, extra, edns, ttl, payload, options, trailing);

        return Prop.ForAll(gen.ToArbitrary(), query =>
        {
            Assert.That(DnsScreening.Screen(query, new byte[DnsMessage.MaxErrorResponseLength], out _, out _), Is.Null, "a well-formed query");
            CheckMinimizedForm(query);
        });
    }

    private static byte[] Query(int flags, string name, int type, int extra, bool edns, uint ttl, int payload, (int Code, int Length)[] options, byte[] trailing)
    {
        var builder = new DnsMessageBuilder().Header(0xBEEF, (ushort)flags, 1, (ushort)extra, (ushort)extra, (ushort)(extra + (edns ? 1 : 0)))
            .Question(name, (ushort)type);
        for (int i = 0; i < 3 * extra; i++)
        {
            builder = builder.A($"r{i}.test", "198.18.0.1");
        }

        if (edns)
        {
            byte[] rdata = [.. options.SelectMany(option => (byte[])[(byte)(option.Code >> 8), (byte)option.Code, (byte)(option.Length >> 8), (byte)option.Length, .. new byte[option.Length]])];
            builder = builder.Opt((ushort)payload, ttl, rdata);
        }

        return [.. builder.ToArray(), .. trailing];
    }

    [FsCheck.NUnit.Property(MaxTest = 3000)]
    public Property MutatedRealMessagesNeverThrow()
    {
        Gen<(int Seed, (int Position, byte Value)[] Mutations, int Cut)> gen =
            from seed in Gen.Choose(0, Seeds.Length - 1)
            from mutations in Gen.Zip(Gen.Choose(0, 1000), ArbMap.Default.GeneratorFor<byte>()).ArrayOf()
            from cut in Gen.Choose(0, 1000)
            select (seed, mutations, cut);

        return Prop.ForAll(gen.ToArbitrary(), input =>
        {
            byte[] message = (byte[])Seeds[input.Seed].Clone();
            foreach ((int position, byte value) in input.Mutations)
            {
                message[position % message.Length] = value;
            }

            CheckEveryReader(message.AsSpan(0, message.Length - (input.Cut % 8 == 0 ? input.Cut % message.Length : 0)).ToArray());
        });
    }

    private static readonly EgressPolicy AllowAll = EgressPolicy.Create(true, ["*"], new AllowlistCache());

    /// <summary>Whatever the message, the enclave's screen either refuses it (an answer section it cannot read, or one a
    /// stub resolver would read differently) or names every internal address of an answer-section A/AAAA record,
    /// whatever its owner, as an address value (an IPv4 address and its mapped IPv6 form are one).</summary>
    private static void CheckInternalAddressesAreFound(byte[] message)
    {
        var refused = new HashSet<UInt128>();
        if (DnsAnswerLearner.RefuseInternal(AllowAll, "a.test", message, NullLogger.Instance, refused) is not null)
        {
            return;
        }

        Assert.That(DnsHeader.TryRead(message, out DnsHeader header), Is.True);
        Assert.That(DnsName.Skip(message, DnsHeader.Length, out int offset), Is.EqualTo(DnsParseError.None));
        offset += 4;
        var expected = new HashSet<UInt128>();
        for (int i = 0; i < header.AnCount; i++)
        {
            Assert.That(DnsRecord.TryRead(message, offset, out DnsRecord record, out offset), Is.EqualTo(DnsParseError.None), "a record the screen read");
            if (record.IsAddress)
            {
                var address = new IPAddress(message.AsSpan(record.DataOffset, record.DataLength));
                if (InternalRanges.TryClassify(address, out _))
                {
                    expected.Add(AddressValue.Of(address));
                }
            }
        }

        Assert.That(refused, Is.EquivalentTo(expected), "the internal addresses of the answer section");
    }

    private static void CheckEveryReader(byte[] message)
    {
        _ = DnsHeader.TryRead(message, out _);
        _ = DnsMessage.IsTruncated(message);

        DnsParseError questionError = DnsMessage.TryParseQuestion(message, out DnsQuestion question, out int questionEnd);
        Assert.That(questionError == DnsParseError.None ? questionEnd <= message.Length && question.Name.Length <= DnsMessage.MaxNameLength : questionEnd == 0, Is.True);
        Assert.That(DnsMessage.TryReadQuestionName(message, new char[DnsMessage.MaxNameLength], out _), Is.EqualTo(questionError));

        for (int end = 0; end <= message.Length + 1; end += 5)
        {
            _ = DnsMessage.ReadEdns(message, end);
        }

        byte[] ednsQuery = DnsMessageBuilder.Query(ar: 1).Question("a.test").Opt(512, 0).ToArray();
        byte[] truncated = new byte[2048];
        int truncatedLength = DnsForwarding.WriteTruncated(ednsQuery, 24, message, 512, truncated);
        if (truncatedLength >= 0)
        {
            Assert.That(truncatedLength, Is.InRange(DnsHeader.Length, 512));
            Assert.That(DnsName.Skip(truncated.AsSpan(0, truncatedLength), DnsHeader.Length, out int cutQuestionEnd), Is.EqualTo(DnsParseError.None));
            Assert.That(DnsMessage.ReadEdns(truncated.AsSpan(0, truncatedLength), cutQuestionEnd + 4).State, Is.EqualTo(DnsEdnsState.Present), "a truncated answer whose records do not read back");
        }

        CheckInternalAddressesAreFound(message);

        var records = new List<DnsAddressRecord>();
        DnsParseError extractError = DnsMessage.ExtractAddresses(message, records);
        Assert.That(extractError == DnsParseError.None || records.Count == 0, Is.True, "addresses from a malformed message");
        Assert.That(records.All(r => r.Ttl >= TimeSpan.Zero && r.Ttl <= TimeSpan.FromSeconds(int.MaxValue)), Is.True);

        foreach ((int rcode, Func<byte[], byte[], int> write) in new (int, Func<byte[], byte[], int>)[]
        {
            (5, (query, destination) => DnsMessage.WriteRefused(query, destination)),
            (2, (query, destination) => DnsMessage.WriteServFail(query, destination)),
            (1, (query, destination) => DnsMessage.WriteFormErr(query, destination)),
            (3, (query, destination) => DnsMessage.WriteDenied(query, destination)),
            (4, (query, destination) => DnsMessage.WriteNotImp(query, destination)),
            (0, (query, destination) => DnsMessage.WriteBadVers(query, destination)),
            (-1, (query, destination) => DnsScreening.Screen(query, destination, out _, out _)?.Length ?? -2),
        })
        {
            byte[] destination = new byte[DnsMessage.MaxErrorResponseLength];
            int length = write(message, destination);
            if (length < 0)
            {
                continue;
            }

            Assert.That(length, Is.InRange(DnsHeader.Length, DnsMessage.MaxErrorResponseLength));
            Assert.That(DnsHeader.TryRead(destination.AsSpan(0, length), out DnsHeader header), Is.True);
            Assert.That((header.IsResponse, header.Id), Is.EqualTo((true, DnsMessage.ReadId(message))));
            Assert.That(header.ResponseCode, rcode < 0 ? Is.AnyOf((byte)0, (byte)1, (byte)4) : Is.EqualTo((byte)rcode));
            Assert.That(header.ArCount, Is.LessThanOrEqualTo(1));
            int recordsStart = header.QdCount == 0 ? DnsHeader.Length : DnsName.Skip(destination.AsSpan(0, length), DnsHeader.Length, out int nameEnd) == DnsParseError.None ? nameEnd + 4 : -1;
            Assert.That(recordsStart, Is.GreaterThan(0), "an answer whose question does not read back");
            Assert.That(DnsMessage.ReadEdns(destination.AsSpan(0, length), recordsStart).State, Is.Not.EqualTo(DnsEdnsState.Malformed), "an answer whose records do not read back");
        }

        CheckMinimizedForm(message);
    }

    /// <summary>Whatever a query the screen lets through carries, what is forwarded is its ID, RD/AD, its question,
    /// and an OPT record without options (its UDP payload size and DO bit) exactly when it had EDNS; and that form
    /// passes the screen again, with the same question.</summary>
    private static void CheckMinimizedForm(byte[] message)
    {
        byte[] scratch = new byte[DnsMessage.MaxErrorResponseLength];
        if (DnsScreening.Screen(message, scratch, out DnsQuestion question, out int questionEnd) is not null)
        {
            return;
        }

        DnsEdns edns = DnsMessage.ReadEdns(message, questionEnd);
        int limit = DnsForwarding.ClientUdpLimit(message, questionEnd);
        byte[] forwarded = (byte[])message.Clone();
        int length = DnsForwarding.Minimize(forwarded, questionEnd);

        Assert.That(length, Is.EqualTo(questionEnd + (edns.State == DnsEdnsState.Present ? DnsEdns.OptLength : 0)));
        Assert.That(length, Is.LessThanOrEqualTo(message.Length));
        byte[] form = forwarded[..length];
        Assert.That(DnsScreening.Screen(form, scratch, out DnsQuestion again, out int againEnd), Is.Null, "the forwarded form passes the screen");
        Assert.That(DnsHeader.TryRead(form, out DnsHeader header), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That((again, againEnd), Is.EqualTo((question, questionEnd)), "the same question");
            Assert.That(form[..2], Is.EqualTo(message[..2]), "the same ID");
            Assert.That(form[DnsHeader.Length..questionEnd], Is.EqualTo(message[DnsHeader.Length..questionEnd]), "the question's bytes as asked");
            Assert.That(header.Flags & ~0x0120, Is.Zero, "no flag but RD and AD");
            Assert.That((header.QdCount, header.AnCount, header.NsCount, header.ArCount), Is.EqualTo((1, 0, 0, edns.State == DnsEdnsState.Present ? 1 : 0)));
            Assert.That(DnsMessage.ReadEdns(form, questionEnd), Is.EqualTo(edns), "EDNS as asked (version, DO)");
            Assert.That(DnsForwarding.ClientUdpLimit(form, questionEnd), Is.EqualTo(limit), "the client's UDP payload size");
        });
    }
}
