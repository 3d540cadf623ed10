using System.Buffers.Binary;
using System.Net;
using System.Runtime.InteropServices;

namespace Egress.Gateway;

/// <summary>
/// Reads the routes of type <c>local</c> and <c>anycast</c> of the tables the kernel's default rules consult (local,
/// main and default) over rtnetlink (an <c>RTM_GETROUTE</c> dump; rtnetlink(7), the layouts of
/// <c>linux/netlink.h</c> and <c>linux/rtnetlink.h</c>), i.e. every destination the kernel delivers to this machine
/// instead of sending it on. Other tables are left out: a transparent proxy's <c>ip route add local 0.0.0.0/0 dev lo
/// table 100</c> serves only the packets a rule sends there (by firewall mark), not this machine's own connections.
/// A rule that sends this machine's own connections to another table is followed by <see cref="Lookup"/>, which asks
/// for one destination's route as the kernel would choose it.
/// </summary>
internal static unsafe partial class LocalRouteReader
{
    private const int AddressFamilyNetlink = 16;
    private const int SocketRaw = 3;
    private const int SocketCloseOnExec = 0x80000;
    private const int NetlinkRoute = 0;
    private const int SolSocket = 1;
    private const int SoReceiveTimeout = 20;

    /// <summary>Bytes of <c>struct nlmsghdr</c>.</summary>
    internal const int HeaderSize = 16;

    /// <summary>Bytes of <c>struct rtmsg</c>.</summary>
    internal const int RouteMessageSize = 12;

    internal const ushort MessageError = 2;
    internal const ushort MessageDone = 3;
    internal const ushort NewRoute = 24;
    private const ushort GetRoute = 26;
    private const ushort FlagRequest = 1;
    private const ushort FlagDump = 0x300;

    /// <summary>NLM_F_DUMP_INTR: the tables changed while the dump was taken; it may be inconsistent.</summary>
    internal const ushort FlagDumpInterrupted = 0x10;

    internal const byte RouteTypeLocal = 2;
    internal const byte RouteTypeAnycast = 4;
    internal const ushort AttributeDestination = 1;
    internal const ushort AttributeOutputInterface = 4;
    internal const ushort AttributeTable = 15;
    internal const uint TableDefault = 253;
    internal const uint TableMain = 254;
    internal const uint TableLocal = 255;
    internal const byte FamilyIPv4 = 2;
    internal const byte FamilyIPv6 = 10;

    private const int Attempts = 3;

    /// <summary>Reads the local and anycast routes of the local, main and default tables now (blocking; a dump takes well under a
    /// millisecond on a host with a few interfaces).</summary>
    /// <returns>Every such route, IPv4 and IPv6.</returns>
    /// <exception cref="IOException">rtnetlink refused or did not answer in 2 s (e.g. a sandbox without
    /// <c>AF_NETLINK</c>), answered with an error, sent a malformed message, or changed the tables during three dumps
    /// in a row.</exception>
    public static List<LocalRoute> Read()
    {
        for (int attempt = 1; ; attempt++)
        {
            var routes = new List<LocalRoute>();
            if (TryDump(routes))
            {
                return routes;
            }

            if (attempt == Attempts)
            {
                throw new IOException($"the routing tables changed during each of {Attempts} rtnetlink dumps");
            }
        }
    }

    /// <summary>Parses one receive's worth of rtnetlink messages of dump <paramref name="sequence"/>, adding each
    /// local or anycast route of the local, main or default table to <paramref name="routes"/>; messages of other
    /// sequences, other route types and other tables are skipped.</summary>
    /// <param name="messages">What one receive returned: whole messages, each padded to 4 bytes.</param>
    /// <param name="sequence">The dump's sequence number.</param>
    /// <param name="routes">Where the routes go.</param>
    /// <param name="interfaceName">The name of an interface index.</param>
    /// <param name="interrupted">Set when a message says the dump was interrupted (NLM_F_DUMP_INTR).</param>
    /// <returns>True when the dump's end (NLMSG_DONE) was among the messages.</returns>
    /// <exception cref="IOException">A message is malformed (a length that runs past the data, a route message or
    /// an attribute shorter than its structure, a destination of the wrong length or a prefix longer than the
    /// address), the kernel answered the dump with an error (NLMSG_ERROR), or its NLMSG_DONE carries one (the dump
    /// stopped short).</exception>
    internal static bool Parse(ReadOnlySpan<byte> messages, uint sequence, List<LocalRoute> routes, Func<int, string> interfaceName, ref bool interrupted)
    {
        while (messages.Length > 0)
        {
            ReadOnlySpan<byte> body = NextMessage(ref messages, out ushort type, out ushort flags, out uint messageSequence);
            if (messageSequence != sequence)
            {
                continue;
            }

            interrupted |= (flags & FlagDumpInterrupted) != 0;
            switch (type)
            {
                case MessageDone:
                    // The int after the header is the dump's end status: a negative errno when the dump stopped short
                    // (-EMSGSIZE for a route larger than the kernel's dump buffer, a huge multipath one, say; iproute2:
                    // "Buffer too small for object. Dump terminated"). The routes before it are then not all of them.
                    int status = body.Length >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(body) : 0;
                    if (status < 0)
                    {
                        throw new IOException($"rtnetlink ended the route dump short: {Marshal.GetPInvokeErrorMessage(-status)} (errno {-status})");
                    }

                    return true;
                case MessageError:
                    int error = body.Length >= 4 ? -BinaryPrimitives.ReadInt32LittleEndian(body) : 0;
                    throw new IOException($"rtnetlink refused the route dump: {Marshal.GetPInvokeErrorMessage(error)} (errno {error})");
                case NewRoute:
                    if (ReadRoute(body, interfaceName, out uint table) is { } route && table is (TableLocal or TableMain or TableDefault))
                    {
                        routes.Add(route);
                    }

                    break;
            }
        }

        return false;
    }

    /// <summary>The route of an RTM_NEWROUTE body when it is of type local or anycast (whatever its table), else null.</summary>
    private static LocalRoute? ReadRoute(ReadOnlySpan<byte> body, Func<int, string> interfaceName, out uint table)
    {
        if (body.Length < RouteMessageSize)
        {
            throw Malformed($"a route message of {body.Length} bytes");
        }

        byte family = body[0];
        int prefixLength = body[1];
        table = body[4]; // RT_TABLE_COMPAT (252) when the id needs RTA_TABLE
        byte type = body[7];
        int addressLength = family switch { FamilyIPv4 => 4, FamilyIPv6 => 16, _ => 0 };
        if (addressLength == 0 || type is not (RouteTypeLocal or RouteTypeAnycast))
        {
            return null;
        }

        if (prefixLength > addressLength * 8)
        {
            throw Malformed($"a /{prefixLength} route of family {family}");
        }

        IPAddress destination = addressLength == 4 ? IPAddress.Any : IPAddress.IPv6Any; // no RTA_DST: the default route
        int outputInterface = 0;
        for (ReadOnlySpan<byte> attributes = body[RouteMessageSize..]; attributes.Length >= 4;)
        {
            ushort length = BinaryPrimitives.ReadUInt16LittleEndian(attributes);
            ushort attributeType = BinaryPrimitives.ReadUInt16LittleEndian(attributes[2..]);
            if (length < 4 || length > attributes.Length)
            {
                throw Malformed($"a route attribute of {length} bytes in {attributes.Length}");
            }

            ReadOnlySpan<byte> value = attributes[4..length];
            switch (attributeType)
            {
                case AttributeDestination when value.Length == addressLength:
                    destination = new IPAddress(value);
                    break;
                case AttributeDestination:
                    throw Malformed($"a destination of {value.Length} bytes for family {family}");
                case AttributeOutputInterface when value.Length == 4:
                    outputInterface = BinaryPrimitives.ReadInt32LittleEndian(value);
                    break;
                case AttributeTable when value.Length == 4:
                    table = BinaryPrimitives.ReadUInt32LittleEndian(value);
                    break;
            }

            attributes = attributes[(int)Math.Min(Align(length), (uint)attributes.Length)..];
        }

        // The kernel keeps the bits past the prefix zero; masking makes a hostile or odd one harmless all the same.
        var prefix = new IPNetwork(Mask(destination, prefixLength), prefixLength);
        return new LocalRoute(prefix, outputInterface > 0 ? interfaceName(outputInterface) : "?");
    }

    private static IPAddress Mask(IPAddress address, int prefixLength)
    {
        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out int written);
        bytes = bytes[..written];
        for (int bit = prefixLength; bit < written * 8; bit++)
        {
            bytes[bit / 8] &= (byte)~(0x80 >> (bit % 8));
        }

        return new IPAddress(bytes);
    }

    private static uint Align(uint length) => (length + 3) & ~3u;

    private static IOException Malformed(string what) => new($"malformed rtnetlink route message: {what}");

    /// <summary>Takes the next message off <paramref name="messages"/> (whole messages, each padded to 4 bytes).</summary>
    /// <returns>The message's body (after <c>struct nlmsghdr</c>).</returns>
    /// <exception cref="IOException">Fewer bytes than a header are left, or the message's length runs past them or is
    /// shorter than a header.</exception>
    private static ReadOnlySpan<byte> NextMessage(ref ReadOnlySpan<byte> messages, out ushort type, out ushort flags, out uint sequence)
    {
        if (messages.Length < HeaderSize)
        {
            throw Malformed($"{messages.Length} bytes left, shorter than a message header");
        }

        uint length = BinaryPrimitives.ReadUInt32LittleEndian(messages);
        type = BinaryPrimitives.ReadUInt16LittleEndian(messages[4..]);
        flags = BinaryPrimitives.ReadUInt16LittleEndian(messages[6..]);
        sequence = BinaryPrimitives.ReadUInt32LittleEndian(messages[8..]);
        if (length < HeaderSize || length > messages.Length)
        {
            throw Malformed($"a message of {length} bytes in {messages.Length}");
        }

        ReadOnlySpan<byte> body = messages[HeaderSize..(int)length];
        messages = messages[(int)Math.Min(Align(length), (uint)messages.Length)..];
        return body;
    }

    /// <summary>Writes the header of an RTM_GETROUTE request of <paramref name="length"/> bytes and an all-zero
    /// <c>struct rtmsg</c> after it.</summary>
    /// <returns>The request's sequence number.</returns>
    private static uint WriteRouteRequest(Span<byte> request, int length, ushort flags)
    {
        uint sequence = (uint)Environment.TickCount;
        request[..(HeaderSize + RouteMessageSize)].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(request, (uint)length);
        BinaryPrimitives.WriteUInt16LittleEndian(request[4..], GetRoute);
        BinaryPrimitives.WriteUInt16LittleEndian(request[6..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(request[8..], sequence);
        return sequence;
    }

    /// <summary>Reads one receive's worth of rtnetlink answers; true when the awaited end was among them.</summary>
    private delegate bool AnswerReader(ReadOnlySpan<byte> received);

    /// <summary>Sends <paramref name="request"/> on a new rtnetlink socket and hands each receive to
    /// <paramref name="read"/> until it says the answer is complete (at most 2 s a receive).</summary>
    /// <exception cref="IOException">The socket cannot be opened, the request not sent, a receive fails or times out,
    /// the socket ends first, or <paramref name="read"/> throws one.</exception>
    private static void Exchange(ReadOnlySpan<byte> request, string what, int bufferSize, AnswerReader read)
    {
        int fd = OpenRouteSocket();
        try
        {
            fixed (byte* data = request)
            {
                if (Send(fd, data, (nuint)request.Length, 0) != request.Length)
                {
                    throw LastError($"cannot ask rtnetlink for {what}");
                }
            }

            byte[] buffer = new byte[bufferSize];
            while (true)
            {
                nint received;
                fixed (byte* data = buffer)
                {
                    received = Receive(fd, data, (nuint)buffer.Length, 0);
                }

                if (received < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Interrupted)
                    {
                        continue;
                    }

                    throw new IOException($"cannot read {what} from rtnetlink: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
                }

                if (received == 0)
                {
                    throw Malformed($"the socket ended before the answer for {what}");
                }

                if (read(buffer.AsSpan(0, (int)received)))
                {
                    return;
                }
            }
        }
        finally
        {
            Close(fd);
        }
    }

    private static int OpenRouteSocket()
    {
        int fd = Socket(AddressFamilyNetlink, SocketRaw | SocketCloseOnExec, NetlinkRoute);
        if (fd < 0)
        {
            throw LastError("cannot open an rtnetlink socket");
        }

        long* timeout = stackalloc long[2] { 2, 0 }; // struct timeval: 2 s
        if (SetSocketOption(fd, SolSocket, SoReceiveTimeout, timeout, 16) != 0)
        {
            IOException error = LastError("cannot set the rtnetlink socket's receive timeout");
            Close(fd);
            throw error;
        }

        return fd;
    }

    private static bool TryDump(List<LocalRoute> routes)
    {
        Span<byte> request = stackalloc byte[HeaderSize + RouteMessageSize];
        uint sequence = WriteRouteRequest(request, request.Length, FlagRequest | FlagDump); // rtmsg all zero: every family, every table
        bool interrupted = false;
        Exchange(request, "the routes", 64 * 1024, received => Parse(received, sequence, routes, NameOf, ref interrupted));
        return !interrupted;
    }

    private static string NameOf(int index)
    {
        byte* name = stackalloc byte[16]; // IF_NAMESIZE
        return IndexToName((uint)index, name) is null ? $"#{index}" : Marshal.PtrToStringUTF8((nint)name) ?? $"#{index}";
    }

    private static IOException LastError(string what)
    {
        int errno = Marshal.GetLastPInvokeError();
        return new IOException($"{what}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
    }

    private const int Interrupted = 4;

    [LibraryImport("libc", EntryPoint = "socket", SetLastError = true)]
    private static partial int Socket(int domain, int type, int protocol);

    [LibraryImport("libc", EntryPoint = "setsockopt", SetLastError = true)]
    private static partial int SetSocketOption(int fd, int level, int name, void* value, uint length);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint Send(int fd, byte* data, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Receive(int fd, byte* data, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "if_indextoname")]
    private static partial byte* IndexToName(uint index, byte* name);
}
