using System.Buffers.Binary;
using System.Net;
using Egress.Gateway;

namespace Egress.Tests.Gateway;

/// <summary>
/// The rtnetlink route dump parser (<see cref="LocalRouteReader.Parse"/>), fed messages built as linux/rtnetlink.h lays
/// them out, and hostile ones: it keeps local and anycast routes of the dump's sequence, and a malformed message is an
/// <see cref="IOException"/>, never another exception or a read past the data.
/// </summary>
public sealed class LocalRouteReaderTests
{
    private const uint Sequence = 77;

    [Test]
    public void KeepsLocalAndAnycastRoutesOfTheDumpAndEndsAtDone()
    {
        byte[] messages = [
            .. Route(LocalRouteReader.FamilyIPv6, 64, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("2001:db8:5::"), outputInterface: 1),
            .. Route(LocalRouteReader.FamilyIPv4, 24, 1 /* unicast */, IPAddress.Parse("198.18.0.0"), outputInterface: 2),
            .. Route(LocalRouteReader.FamilyIPv6, 128, LocalRouteReader.RouteTypeAnycast, IPAddress.Parse("2001:db8:7::"), outputInterface: 2),
            .. Route(LocalRouteReader.FamilyIPv4, 32, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("203.0.113.5"), outputInterface: 2, sequence: Sequence + 1),
            .. Route(LocalRouteReader.FamilyIPv4, 8, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("127.0.0.0"), outputInterface: 0),
            .. Message(LocalRouteReader.MessageDone, Sequence, new byte[4]),
        ];
        var routes = new List<LocalRoute>();
        bool interrupted = false;

        bool done = LocalRouteReader.Parse(messages, Sequence, routes, index => index == 1 ? "lo" : "eth0", ref interrupted);

        Assert.Multiple(() =>
        {
            Assert.That(done, Is.True);
            Assert.That(interrupted, Is.False);
            Assert.That(routes, Is.EqualTo(new[]
            {
                new LocalRoute(IPNetwork.Parse("2001:db8:5::/64"), "lo"),
                new LocalRoute(IPNetwork.Parse("2001:db8:7::/128"), "eth0"),
                new LocalRoute(IPNetwork.Parse("127.0.0.0/8"), "?"),
            }));
        });
    }

    [Test]
    public void ARouteWithoutADestinationIsTheDefaultAndHostBitsAreMasked()
    {
        byte[] messages = [
            .. Route(LocalRouteReader.FamilyIPv4, 0, LocalRouteReader.RouteTypeLocal, null, outputInterface: 1),
            .. Route(LocalRouteReader.FamilyIPv6, 48, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("2001:db8:5:ffff::1"), outputInterface: 1),
        ];
        var routes = new List<LocalRoute>();
        bool interrupted = false;

        bool done = LocalRouteReader.Parse(messages, Sequence, routes, _ => "lo", ref interrupted);

        Assert.That((done, routes.Select(route => route.Prefix.ToString())), Is.EqualTo((false, new[] { "0.0.0.0/0", "2001:db8:5::/48" })));
    }

    /// <summary>A transparent proxy's <c>ip route add local 0.0.0.0/0 dev lo table 100</c> serves marked packets
    /// only; taken as the parent's own, it would deny every IPv4 destination.</summary>
    [Test]
    public void OnlyTheTablesTheDefaultRulesConsultCount()
    {
        byte[] messages = [
            .. Route(LocalRouteReader.FamilyIPv4, 0, LocalRouteReader.RouteTypeLocal, null, outputInterface: 1, table: 100),
            .. Route(LocalRouteReader.FamilyIPv4, 0, LocalRouteReader.RouteTypeLocal, null, outputInterface: 1, table: 1000),
            .. Route(LocalRouteReader.FamilyIPv6, 64, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("2001:db8:5::"), outputInterface: 1, table: LocalRouteReader.TableMain),
            .. Route(LocalRouteReader.FamilyIPv6, 64, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("2001:db8:6::"), outputInterface: 1, table: LocalRouteReader.TableDefault),
            .. Route(LocalRouteReader.FamilyIPv4, 24, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("198.19.250.0"), outputInterface: 1, table: LocalRouteReader.TableMain, tableAttribute: true),
        ];
        var routes = new List<LocalRoute>();
        bool interrupted = false;

        LocalRouteReader.Parse(messages, Sequence, routes, _ => "lo", ref interrupted);

        Assert.That(routes.Select(route => route.Prefix.ToString()), Is.EqualTo(new[] { "2001:db8:5::/64", "2001:db8:6::/64", "198.19.250.0/24" }));
    }

    [Test]
    public void AnInterruptedDumpIsReported()
    {
        byte[] route = Route(LocalRouteReader.FamilyIPv4, 32, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("198.18.0.1"), outputInterface: 1);
        BinaryPrimitives.WriteUInt16LittleEndian(route.AsSpan(6), LocalRouteReader.FlagDumpInterrupted);
        bool interrupted = false;

        LocalRouteReader.Parse(route, Sequence, [], _ => "lo", ref interrupted);

        Assert.That(interrupted, Is.True);
    }

    [Test]
    public void AnErrorAnswerIsAnIOExceptionWithTheErrno()
    {
        byte[] error = Message(LocalRouteReader.MessageError, Sequence, [.. BitConverter.GetBytes(-1), .. new byte[16]]);
        bool interrupted = false;

        var thrown = Assert.Throws<IOException>(() => LocalRouteReader.Parse(error, Sequence, [], _ => "lo", ref interrupted))!;

        Assert.That(thrown.Message, Does.Contain("rtnetlink refused the route dump").And.Contain("errno 1"));
    }

    /// <summary>A dump whose callback failed ends with NLMSG_DONE carrying the negative errno (linux/netlink.h: the
    /// int after the header; e.g. -EMSGSIZE, "Buffer too small for object" in iproute2, for a route larger than the
    /// kernel's dump buffer): the routes before it are not all of them, so it is no complete dump.</summary>
    [Test]
    public void ADoneThatCarriesAnErrorIsAnIOExceptionWithTheErrno()
    {
        byte[] messages = [
            .. Route(LocalRouteReader.FamilyIPv4, 32, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("198.18.0.1"), outputInterface: 1),
            .. Message(LocalRouteReader.MessageDone, Sequence, BitConverter.GetBytes(-90)),
        ];
        bool interrupted = false;

        var thrown = Assert.Throws<IOException>(() => LocalRouteReader.Parse(messages, Sequence, [], _ => "lo", ref interrupted))!;

        Assert.That(thrown.Message, Does.Contain("errno 90"));
    }

    [TestCase("short header")]
    [TestCase("length past the data")]
    [TestCase("length below the header")]
    [TestCase("short route message")]
    [TestCase("attribute past the route")]
    [TestCase("destination of the wrong length")]
    [TestCase("prefix longer than the address")]
    public void AMalformedMessageIsAnIOException(string fault)
    {
        byte[] good = Route(LocalRouteReader.FamilyIPv6, 64, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("2001:db8:5::"), outputInterface: 1);
        byte[] bad = fault switch
        {
            "short header" => good[..10],
            "length past the data" => WithLength(good, good.Length + 4),
            "length below the header" => WithLength(good, 8),
            "short route message" => Message(LocalRouteReader.NewRoute, Sequence, new byte[8]),
            "attribute past the route" => WithAttributeLength(good, 200),
            "destination of the wrong length" => Route(LocalRouteReader.FamilyIPv4, 24, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("2001:db8::"), outputInterface: 1),
            _ => Route(LocalRouteReader.FamilyIPv4, 33, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("198.18.0.0"), outputInterface: 1),
        };
        bool interrupted = false;

        Assert.Throws<IOException>(() => LocalRouteReader.Parse(bad, Sequence, [], _ => "lo", ref interrupted));
    }

    /// <summary>Random mutations of a real-looking dump: every outcome is routes, false, or an IOException.</summary>
    [Test]
    public void MutatedDumpsNeverThrowAnythingButIOException()
    {
        byte[] seed = [
            .. Route(LocalRouteReader.FamilyIPv6, 64, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("2001:db8:5::"), outputInterface: 1),
            .. Route(LocalRouteReader.FamilyIPv4, 32, LocalRouteReader.RouteTypeAnycast, IPAddress.Parse("198.18.0.1"), outputInterface: 2),
            .. Message(LocalRouteReader.MessageDone, Sequence, new byte[4]),
        ];
        var (parsed, refused) = Mutate(seed, 20261202, input =>
        {
            bool interrupted = false;
            LocalRouteReader.Parse(input, Sequence, [], _ => "lo", ref interrupted);
        });

        Assert.That((parsed > 0, refused > 0), Is.EqualTo((true, true)), $"parsed {parsed}, refused {refused}");
    }

    /// <summary>The answer to one destination's route request (<see cref="LocalRouteReader.ParseLookup"/>): a local
    /// route of any table (a rule may lead there), the table read from RTA_TABLE past 255.</summary>
    [Test]
    public void ALookupAnswerIsTheLocalRouteOfWhateverTable()
    {
        byte[] messages = [
            .. Route(LocalRouteReader.FamilyIPv4, 32, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("203.0.113.5"), outputInterface: 2, sequence: Sequence + 1),
            .. Route(LocalRouteReader.FamilyIPv6, 64, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("2001:db8:9::"), outputInterface: 1, table: 1000),
        ];

        bool answered = LocalRouteReader.ParseLookup(messages, Sequence, index => index == 1 ? "lo" : "eth0", out var answer);

        Assert.That((answered, answer), Is.EqualTo((true, ((LocalRoute, uint)?)(new LocalRoute(IPNetwork.Parse("2001:db8:9::/64"), "lo"), 1000u))));
    }

    [TestCase(1 /* unicast */, 0, true)]
    [TestCase(-1, 101 /* ENETUNREACH */, true)]
    [TestCase(-1, 113 /* EHOSTUNREACH */, true)]
    [TestCase(-1, 22 /* EINVAL: a blackhole route or rule */, true)]
    [TestCase(-1, 13 /* EACCES: a prohibit route or rule */, true)]
    [TestCase(-1, 90 /* EMSGSIZE: a multipath route too large to describe */, true)]
    public void ALookupAnswerThatIsNoLocalRouteIsNone(int routeType, int errno, bool answered)
    {
        byte[] messages = routeType >= 0
            ? Route(LocalRouteReader.FamilyIPv4, 0, (byte)routeType, null, outputInterface: 2)
            : Message(LocalRouteReader.MessageError, Sequence, BitConverter.GetBytes(-errno));

        bool done = LocalRouteReader.ParseLookup(messages, Sequence, _ => "eth0", out var answer);

        Assert.That((done, answer), Is.EqualTo((answered, ((LocalRoute, uint)?)null)));
    }

    [Test]
    public void AnAnswerToAnotherRequestIsNotTheAnswer()
    {
        byte[] messages = Route(LocalRouteReader.FamilyIPv4, 32, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("203.0.113.5"), outputInterface: 2, sequence: Sequence + 1);

        bool done = LocalRouteReader.ParseLookup(messages, Sequence, _ => "eth0", out var answer);

        Assert.That((done, answer), Is.EqualTo((false, ((LocalRoute, uint)?)null)));
    }

    [Test]
    public void ALookupErrorThatDoesNotSayWhereItGoesIsAnIOExceptionWithTheErrno()
    {
        byte[] messages = Message(LocalRouteReader.MessageError, Sequence, BitConverter.GetBytes(-105 /* ENOBUFS */));

        var error = Assert.Throws<IOException>(() => LocalRouteReader.ParseLookup(messages, Sequence, _ => "lo", out _))!;

        Assert.That(error.Message, Does.Contain("errno 105"));
    }

    /// <summary>Random mutations of a lookup answer: every outcome is an answer, none, or an IOException.</summary>
    [Test]
    public void MutatedLookupAnswersNeverThrowAnythingButIOException()
    {
        byte[] seed = [
            .. Route(LocalRouteReader.FamilyIPv6, 64, LocalRouteReader.RouteTypeLocal, IPAddress.Parse("2001:db8:9::"), outputInterface: 1, table: 1000),
            .. Message(LocalRouteReader.MessageError, Sequence, BitConverter.GetBytes(-101)),
        ];
        var (parsed, refused) = Mutate(seed, 20261203, input => LocalRouteReader.ParseLookup(input, Sequence, _ => "lo", out _));

        Assert.That((parsed > 0, refused > 0), Is.EqualTo((true, true)), $"parsed {parsed}, refused {refused}");
    }

    /// <summary>Parses 20,000 random cuts and byte flips of <paramref name="seed"/>; any exception but an
    /// <see cref="IOException"/> fails the test.</summary>
    /// <returns>How many parsed and how many were refused with an IOException.</returns>
    private static (int Parsed, int Refused) Mutate(byte[] seed, int randomSeed, Action<byte[]> parse)
    {
        var random = new Random(randomSeed);
        int parsed = 0, refused = 0;
        for (int i = 0; i < 20_000; i++)
        {
            byte[] input = seed[..random.Next(seed.Length + 1)];
            for (int flips = random.Next(1, 6); flips > 0 && input.Length > 0; flips--)
            {
                input[random.Next(input.Length)] = (byte)random.Next(256);
            }

            try
            {
                parse(input);
                parsed++;
            }
            catch (IOException)
            {
                refused++;
            }
        }

        return (parsed, refused);
    }

    private static byte[] Route(
        byte family, byte prefixLength, byte type, IPAddress? destination, int outputInterface, uint sequence = Sequence, uint table = LocalRouteReader.TableLocal, bool tableAttribute = false)
    {
        // A table id over 255 is RT_TABLE_COMPAT (252) in the header and the id in RTA_TABLE, as the kernel writes it.
        var body = new List<byte> { family, prefixLength, 0, 0, (byte)(table > 255 ? 252 : table), 2 /* kernel */, 254 /* host */, type, 0, 0, 0, 0 };
        if (table > 255 || tableAttribute)
        {
            body.AddRange(Attribute(LocalRouteReader.AttributeTable, BitConverter.GetBytes(table)));
        }

        if (destination is not null)
        {
            body.AddRange(Attribute(LocalRouteReader.AttributeDestination, destination.GetAddressBytes()));
        }

        if (outputInterface > 0)
        {
            body.AddRange(Attribute(LocalRouteReader.AttributeOutputInterface, BitConverter.GetBytes(outputInterface)));
        }

        return Message(LocalRouteReader.NewRoute, sequence, [.. body]);
    }

    private static byte[] Attribute(ushort type, byte[] value)
    {
        int length = 4 + value.Length;
        byte[] attribute = new byte[(length + 3) & ~3];
        BinaryPrimitives.WriteUInt16LittleEndian(attribute, (ushort)length);
        BinaryPrimitives.WriteUInt16LittleEndian(attribute.AsSpan(2), type);
        value.CopyTo(attribute, 4);
        return attribute;
    }

    private static byte[] Message(ushort type, uint sequence, byte[] body)
    {
        byte[] message = new byte[(LocalRouteReader.HeaderSize + body.Length + 3) & ~3];
        BinaryPrimitives.WriteUInt32LittleEndian(message, (uint)(LocalRouteReader.HeaderSize + body.Length));
        BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(4), type);
        BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(6), 2 /* NLM_F_MULTI */);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(8), sequence);
        body.CopyTo(message, LocalRouteReader.HeaderSize);
        return message;
    }

    private static byte[] WithLength(byte[] message, int length)
    {
        byte[] copy = [.. message];
        BinaryPrimitives.WriteUInt32LittleEndian(copy, (uint)length);
        return copy;
    }

    private static byte[] WithAttributeLength(byte[] message, int length)
    {
        byte[] copy = [.. message];
        BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(LocalRouteReader.HeaderSize + LocalRouteReader.RouteMessageSize), (ushort)length);
        return copy;
    }
}
