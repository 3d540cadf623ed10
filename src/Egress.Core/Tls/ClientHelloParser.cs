using System.Buffers;
using System.Buffers.Binary;

namespace Egress.Tls;

/// <summary>
/// Reads the server name from the first bytes a client sends, if they are a TLS ClientHello (RFC 8446 §4.1.2, TLS 1.0
/// to 1.3 share its shape): TLS records of content type 22 (handshake, RFC 8446 §5.1) carrying one handshake message
/// of type 1, reassembled across records and across however many receives delivered them (a record of another type
/// first, such as an alert, is malformed: servers may skip it and read the ClientHello behind it), and its server_name
/// extension (type 0, RFC 6066 §3: one host_name) and encrypted_client_hello extension (type 0xfe0d,
/// draft-ietf-tls-esni). <see cref="Parse(ReadOnlySpan{byte}, ref ClientHelloScan, out ClientHello)"/> is called again
/// with all bytes received so far until it decides, and goes on from the last whole record it walked (a client that
/// sends a ClientHello in 1-byte records, one byte at a time, costs work in proportion to its bytes, not to their
/// square: a red-team trial made egress-host spend 0.08-0.33 CPU-s on each 164 KB stream that way); it never throws,
/// whatever the bytes, and checks every length against what contains it.
/// </summary>
internal static class ClientHelloParser
{
    /// <summary>The largest ClientHello handshake message accepted, body and 4-byte header, in bytes: 16 KiB, eight
    /// times a ClientHello with a post-quantum key share (X25519MLKEM768 adds 1216 bytes, about 1.8 KiB in all).</summary>
    public const int MaxHandshakeLength = 16 * 1024;

    /// <summary>The most bytes the ClientHello's records may take, record headers included (small records cost 5 bytes
    /// each): 32 KiB. A caller holds at most this much before it decides.</summary>
    public const int MaxBytes = 32 * 1024;

    private const byte HandshakeRecord = 22;

    // The TLS record content types (RFC 8446 §5.1, RFC 6520 heartbeat, RFC 9146 tls12_cid): change_cipher_spec (20) to
    // tls12_cid (25). A first record of any of them but handshake (22) is no ClientHello, yet not plain text either.
    private const byte FirstRecordType = 20;
    private const byte LastRecordType = 25;

    // The version's first byte below which Go still takes a first alert record (version < 0x1000).
    private const byte MaxRecordMajorVersion = 0x10;
    private const byte AlertRecord = 21;
    private const int AlertLength = 2; // level and description (RFC 8446 §6)
    private const byte ClientHelloType = 1;
    private const int RecordHeaderLength = 5;
    private const int HandshakeHeaderLength = 4;
    private const int MaxRecordLength = 1 << 14; // RFC 8446 §5.1: a TLSPlaintext fragment is at most 2^14 bytes
    private const ushort ServerNameExtension = 0;
    private const ushort EncryptedClientHelloExtension = 0xfe0d;
    private const byte HostNameType = 0;
    private const int MaxHostNameLength = 253;
    private const int MaxLabelLength = 63;

    // legacy_version (2), random (32), session id length (1), cipher suites length (2) and one suite (2),
    // compression methods length (1) and one method (1).
    private const int MinClientHelloBody = 41;

    /// <summary>Decides what <paramref name="received"/> (every byte the client sent so far, from the first) is.</summary>
    /// <param name="received">The client's first bytes.</param>
    /// <param name="hello">The ClientHello's server name and ECH flag when the result is <see cref="ClientHelloStatus.ClientHello"/>.</param>
    /// <returns>Whether to read more, or what the bytes are.</returns>
    public static ClientHelloStatus Parse(ReadOnlySpan<byte> received, out ClientHello hello)
    {
        ClientHelloScan scan = default;
        return Parse(received, ref scan, out hello);
    }

    /// <summary>Decides what <paramref name="received"/> is, going on from where <paramref name="scan"/> says the last
    /// call with a shorter prefix of the same bytes stopped.</summary>
    /// <param name="received">The client's first bytes: every byte so far, from the first; a call's bytes begin with the
    /// bytes of the call before it with the same <paramref name="scan"/>.</param>
    /// <param name="scan">Where the record walk stands: default before the first call; updated by each call (only a
    /// result of <see cref="ClientHelloStatus.NeedMore"/> is followed by another).</param>
    /// <param name="hello">The ClientHello's server name and ECH flag when the result is <see cref="ClientHelloStatus.ClientHello"/>.</param>
    /// <returns>Whether to read more, or what the bytes are: the same as <see cref="Parse(ReadOnlySpan{byte}, out ClientHello)"/> of them.</returns>
    public static ClientHelloStatus Parse(ReadOnlySpan<byte> received, ref ClientHelloScan scan, out ClientHello hello)
    {
        hello = default;
        if (received.IsEmpty)
        {
            return ClientHelloStatus.NeedMore;
        }

        if ((received[0] & 0x80) != 0)
        {
            // An SSL 2.0-format CLIENT-HELLO (RFC 5246 Appendix E.2: a 2-byte length with the high bit set, then
            // msg_type 1), which TLS 1.0 servers may still accept: it cannot carry extensions, so it has no server
            // name. Read as a ClientHello without one (refused under "require"), never as plain text.
            if (received.Length < 3)
            {
                return ClientHelloStatus.NeedMore;
            }

            if (received[2] == 1)
            {
                hello = new ClientHello(null, false);
                return ClientHelloStatus.ClientHello;
            }

            return ClientHelloStatus.NotTls;
        }

        if (received[0] != HandshakeRecord)
        {
            if (received[0] is < FirstRecordType or > LastRecordType)
            {
                return ClientHelloStatus.NotTls;
            }

            // A TLS record of another type (an alert, change_cipher_spec, ...) before the ClientHello: Go's crypto/tls
            // server skips a warning alert before the handshake and reads the ClientHello after it, so passing these
            // bytes as plain text would pass that ClientHello unchecked. Which first records a server takes: OpenSSL,
            // BoringSSL and Java only those with TLS's major version 3; Go also an alert whose version is below 0x1000
            // (conn.go, readRecordOrCCS), and it skips an alert only when it is 2 bytes long (other lengths end the
            // connection). So those two are malformed; everything else here stays plain text, such as a binary
            // protocol with a little-endian length first (MongoDB's wire protocol: 276 bytes is 14 01 00 00).
            if (received.Length < 2)
            {
                return ClientHelloStatus.NeedMore;
            }

            if (received[1] == 3)
            {
                return ClientHelloStatus.Malformed;
            }

            if (received[0] != AlertRecord || received[1] >= MaxRecordMajorVersion)
            {
                return ClientHelloStatus.NotTls;
            }

            return received.Length < RecordHeaderLength ? ClientHelloStatus.NeedMore
                : BinaryPrimitives.ReadUInt16BigEndian(received[3..]) == AlertLength ? ClientHelloStatus.Malformed : ClientHelloStatus.NotTls;
        }

        // Every whole record before scan.Offset has been walked and checked by an earlier call: go on from there (from the
        // start if the bytes are fewer than that, which no caller passes: the parse never throws).
        if ((uint)scan.Offset > (uint)received.Length)
        {
            scan = default;
        }

        Span<byte> header = stackalloc byte[HandshakeHeaderLength];
        BinaryPrimitives.WriteUInt32BigEndian(header, scan.Header);
        int collected = scan.Collected;
        int messageLength = scan.Offset == 0 ? -1 : scan.MessageLength; // header included, once the header is known
        int offset = scan.Offset;
        int records = scan.Records;
        while (true)
        {
            scan = new ClientHelloScan(offset, records, collected, messageLength, BinaryPrimitives.ReadUInt32BigEndian(header));
            ReadOnlySpan<byte> rest = received[offset..];
            if (rest.IsEmpty)
            {
                return ClientHelloStatus.NeedMore;
            }

            if (rest[0] != HandshakeRecord || (rest.Length > 1 && rest[1] != 3))
            {
                return ClientHelloStatus.Malformed; // another record type before the ClientHello ended, or not TLS 1.x
            }

            if (rest.Length < RecordHeaderLength)
            {
                return ClientHelloStatus.NeedMore;
            }

            int recordLength = BinaryPrimitives.ReadUInt16BigEndian(rest[3..]);
            if (recordLength is 0 or > MaxRecordLength)
            {
                return ClientHelloStatus.Malformed; // RFC 8446 §5.1: no zero-length handshake fragments, none over 2^14
            }

            if (offset + RecordHeaderLength + recordLength > MaxBytes)
            {
                return ClientHelloStatus.TooLarge; // decided on the header, so a longer input never decides otherwise
            }

            records++;
            ReadOnlySpan<byte> fragment = rest.Slice(RecordHeaderLength, Math.Min(recordLength, rest.Length - RecordHeaderLength));
            for (int i = 0; collected + i < HandshakeHeaderLength && i < fragment.Length; i++)
            {
                header[collected + i] = fragment[i];
            }

            collected += fragment.Length;
            if (messageLength < 0 && collected >= HandshakeHeaderLength)
            {
                if (header[0] != ClientHelloType)
                {
                    return ClientHelloStatus.Malformed;
                }

                int bodyLength = (header[1] << 16) | (header[2] << 8) | header[3];
                if (bodyLength > MaxHandshakeLength - HandshakeHeaderLength)
                {
                    return ClientHelloStatus.TooLarge;
                }

                if (bodyLength < MinClientHelloBody)
                {
                    return ClientHelloStatus.Malformed;
                }

                messageLength = HandshakeHeaderLength + bodyLength;
            }

            if (messageLength >= 0 && collected >= messageLength)
            {
                return Assemble(received, records, messageLength, out hello);
            }

            if (fragment.Length < recordLength)
            {
                return ClientHelloStatus.NeedMore;
            }

            offset += RecordHeaderLength + recordLength;
        }
    }

    /// <summary>Joins the message from the first <paramref name="records"/> records (already checked) and parses it.</summary>
    private static ClientHelloStatus Assemble(ReadOnlySpan<byte> received, int records, int messageLength, out ClientHello hello)
    {
        int firstLength = BinaryPrimitives.ReadUInt16BigEndian(received[3..]);
        if (records == 1 || firstLength >= messageLength)
        {
            return ParseMessage(received.Slice(RecordHeaderLength, messageLength), out hello);
        }

        byte[] joined = ArrayPool<byte>.Shared.Rent(messageLength);
        try
        {
            int filled = 0;
            int offset = 0;
            while (filled < messageLength)
            {
                int recordLength = BinaryPrimitives.ReadUInt16BigEndian(received[(offset + 3)..]);
                int take = Math.Min(Math.Min(recordLength, messageLength - filled), received.Length - offset - RecordHeaderLength);
                received.Slice(offset + RecordHeaderLength, take).CopyTo(joined.AsSpan(filled));
                filled += take;
                offset += RecordHeaderLength + recordLength;
            }

            return ParseMessage(joined.AsSpan(0, messageLength), out hello);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(joined);
        }
    }

    /// <summary>Parses a whole ClientHello handshake message (RFC 8446 §4.1.2), header included.</summary>
    private static ClientHelloStatus ParseMessage(ReadOnlySpan<byte> message, out ClientHello hello)
    {
        hello = default;
        ReadOnlySpan<byte> body = message[HandshakeHeaderLength..];
        int p = 2 + 32; // legacy_version, random
        int sessionIdLength = body[p++];
        if (sessionIdLength > 32 || body.Length - p < sessionIdLength + 2)
        {
            return ClientHelloStatus.Malformed;
        }

        p += sessionIdLength;
        int cipherSuitesLength = BinaryPrimitives.ReadUInt16BigEndian(body[p..]);
        p += 2;
        if (cipherSuitesLength < 2 || cipherSuitesLength % 2 != 0 || body.Length - p < cipherSuitesLength + 1)
        {
            return ClientHelloStatus.Malformed;
        }

        p += cipherSuitesLength;
        int compressionLength = body[p++];
        if (compressionLength < 1 || body.Length - p < compressionLength)
        {
            return ClientHelloStatus.Malformed;
        }

        p += compressionLength;
        if (p == body.Length)
        {
            hello = new ClientHello(null, false); // no extensions at all (TLS 1.2 and older may omit them)
            return ClientHelloStatus.ClientHello;
        }

        if (body.Length - p < 2 || BinaryPrimitives.ReadUInt16BigEndian(body[p..]) != body.Length - p - 2)
        {
            return ClientHelloStatus.Malformed; // the extensions must fill the rest of the message exactly
        }

        return ParseExtensions(body[(p + 2)..], out hello);
    }

    private static ClientHelloStatus ParseExtensions(ReadOnlySpan<byte> extensions, out ClientHello hello)
    {
        hello = default;
        Span<ulong> seen = stackalloc ulong[65536 / 64];
        seen.Clear();
        string? serverName = null;
        bool ech = false;
        while (!extensions.IsEmpty)
        {
            if (extensions.Length < 4)
            {
                return ClientHelloStatus.Malformed;
            }

            ushort type = BinaryPrimitives.ReadUInt16BigEndian(extensions);
            int length = BinaryPrimitives.ReadUInt16BigEndian(extensions[2..]);
            if (extensions.Length - 4 < length)
            {
                return ClientHelloStatus.Malformed;
            }

            ref ulong word = ref seen[type >> 6];
            ulong bit = 1UL << (type & 63);
            if ((word & bit) != 0)
            {
                return ClientHelloStatus.Malformed; // RFC 8446 §4.2: no two extensions of the same type
            }

            word |= bit;
            ReadOnlySpan<byte> data = extensions.Slice(4, length);
            if (type == ServerNameExtension)
            {
                serverName = ParseServerName(data);
                if (serverName is null)
                {
                    return ClientHelloStatus.Malformed;
                }
            }
            else if (type == EncryptedClientHelloExtension)
            {
                ech = true;
            }

            extensions = extensions[(4 + length)..];
        }

        hello = new ClientHello(serverName, ech);
        return ClientHelloStatus.ClientHello;
    }

    /// <summary>The host_name of a ClientHello's server_name extension (RFC 6066 §3), lower case and without a trailing
    /// dot; null unless the list holds exactly one entry, of type host_name, that is a valid DNS name (letters, digits,
    /// '-', '_', dots between labels of 1-63 bytes, at most 253 bytes, and at most one trailing dot, which is dropped).</summary>
    private static string? ParseServerName(ReadOnlySpan<byte> data)
    {
        if (data.Length < 2 || BinaryPrimitives.ReadUInt16BigEndian(data) != data.Length - 2)
        {
            return null;
        }

        ReadOnlySpan<byte> list = data[2..];
        if (list.Length < 3 || list[0] != HostNameType)
        {
            return null;
        }

        int nameLength = BinaryPrimitives.ReadUInt16BigEndian(list[1..]);
        if (nameLength != list.Length - 3)
        {
            return null; // a second entry (or a short one): one host_name only
        }

        ReadOnlySpan<byte> name = list[3..];
        if (name.Length > 1 && name[^1] == (byte)'.')
        {
            // RFC 6066 §3 leaves the trailing dot out, but Python's ssl sends the name as the application gave it, and
            // servers (nginx among them) accept it: the same name, read without its dot (the bytes go on unchanged).
            name = name[..^1];
        }

        return IsHostName(name) ? string.Create(name.Length, name.ToArray(), static (chars, bytes) =>
        {
            for (int i = 0; i < bytes.Length; i++)
            {
                chars[i] = (char)(bytes[i] is >= (byte)'A' and <= (byte)'Z' ? bytes[i] + 32 : bytes[i]);
            }
        }) : null;
    }

    private static bool IsHostName(ReadOnlySpan<byte> name)
    {
        if (name.IsEmpty || name.Length > MaxHostNameLength)
        {
            return false;
        }

        int label = 0;
        foreach (byte b in name)
        {
            if (b == (byte)'.')
            {
                if (label == 0)
                {
                    return false; // empty label: leading dot, two dots
                }

                label = 0;
                continue;
            }

            if (!Dns.Wire.DnsName.IsHostnameByte(b) || ++label > MaxLabelLength)
            {
                return false;
            }
        }

        return label > 0; // no empty last label (a trailing dot was dropped before: only one is)
    }
}
