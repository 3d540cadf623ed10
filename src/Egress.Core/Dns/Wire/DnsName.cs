namespace Egress.Dns.Wire;

/// <summary>Allocation-free operations on (possibly compressed) names inside a DNS message.</summary>
internal static class DnsName
{
    /// <summary>The most characters <see cref="Describe"/> writes before it cuts the rest (as "...").</summary>
    internal const int MaxDescribed = 120;

    /// <summary>
    /// The name at <paramref name="offset"/> of <paramref name="message"/> as a log line may show it, however malformed:
    /// labels joined by dots, printable ASCII kept (but <c>.</c> and <c>\</c> inside a label), every other byte as
    /// <c>\DDD</c> (the zone-file escape, RFC 1035 §5.1, as dig writes it), and what stopped the walk in brackets
    /// (<c>(compression pointer)</c>, <c>(label length 70)</c>, <c>(cut short)</c>); at most <see cref="MaxDescribed"/>
    /// characters. For a query refused with FORMERR, whose name could not be read as a name.
    /// </summary>
    public static string Describe(ReadOnlySpan<byte> message, int offset)
    {
        var text = new System.Text.StringBuilder();
        int position = offset;
        while (text.Length < MaxDescribed)
        {
            if (position >= message.Length)
            {
                text.Append("(cut short)");
                break;
            }

            int length = message[position++];
            if (length == 0)
            {
                break;
            }

            if (length > 63)
            {
                text.Append(length >= 0xC0 ? "(compression pointer)" : $"(label length {length})");
                break;
            }

            for (int i = 0; i < length && text.Length < MaxDescribed; i++, position++)
            {
                if (position >= message.Length)
                {
                    return Limited(text.Append("(cut short)"));
                }

                byte b = message[position];
                if (b is > 0x20 and < 0x7F and not (byte)'.' and not (byte)'\\')
                {
                    text.Append((char)b);
                }
                else
                {
                    text.Append('\\').Append(b.ToString("D3", System.Globalization.CultureInfo.InvariantCulture));
                }
            }

            text.Append('.');
        }

        return text.Length == 0 ? "." : Limited(text);

        static string Limited(System.Text.StringBuilder text) =>
            text.Length > MaxDescribed ? text.ToString(0, MaxDescribed) + "..." : text.ToString();
    }

    /// <summary>The longest dotted text form of a name: 255 wire octets less the first length octet and the
    /// terminating zero.</summary>
    public const int MaxTextLength = 253;

    /// <summary>The longest uncompressed wire form of a name.</summary>
    public const int MaxWireLength = 255;

    /// <summary>Validates the name at <paramref name="offset"/> (following its pointers) and finds where it ends.</summary>
    /// <param name="message">The whole message.</param>
    /// <param name="offset">Where the name starts.</param>
    /// <param name="end">The offset just after the name in place.</param>
    /// <returns><see cref="DnsParseError.None"/> or the reason the name is malformed.</returns>
    public static DnsParseError Skip(ReadOnlySpan<byte> message, int offset, out int end)
    {
        var reader = new DnsNameReader(message, offset);
        while (true)
        {
            DnsParseError error = reader.Next(out ReadOnlySpan<byte> label);
            if (error != DnsParseError.None || label.IsEmpty)
            {
                end = error == DnsParseError.None ? reader.End : 0;
                return error;
            }
        }
    }

    /// <summary>Decodes the name at <paramref name="offset"/> to its dotted text form, without a trailing dot
    /// (the root name is empty), keeping the case found on the wire.</summary>
    /// <param name="message">The whole message.</param>
    /// <param name="offset">Where the name starts.</param>
    /// <param name="destination">Receives the text; must hold at least <see cref="MaxTextLength"/> chars.</param>
    /// <param name="charsWritten">The length of the text.</param>
    /// <param name="end">The offset just after the name in place.</param>
    /// <returns><see cref="DnsParseError.None"/>, <see cref="DnsParseError.BadCharacter"/> for a label byte
    /// outside letters, digits, '-' and '_', or the reason the name is malformed.</returns>
    public static DnsParseError Decode(ReadOnlySpan<byte> message, int offset, Span<char> destination, out int charsWritten, out int end)
    {
        var reader = new DnsNameReader(message, offset);
        charsWritten = 0;
        end = 0;
        while (true)
        {
            DnsParseError error = reader.Next(out ReadOnlySpan<byte> label);
            if (error != DnsParseError.None)
            {
                charsWritten = 0;
                return error;
            }

            if (label.IsEmpty)
            {
                end = reader.End;
                return DnsParseError.None;
            }

            if (charsWritten > 0)
            {
                destination[charsWritten++] = '.';
            }

            foreach (byte b in label)
            {
                if (!IsHostnameByte(b))
                {
                    charsWritten = 0;
                    return DnsParseError.BadCharacter;
                }

                destination[charsWritten++] = (char)b;
            }
        }
    }

    /// <summary>Compares two names of the same message label by label, ignoring ASCII case (RFC 4343).</summary>
    /// <param name="message">The whole message.</param>
    /// <param name="offsetA">Where the first name starts.</param>
    /// <param name="offsetB">Where the second name starts.</param>
    /// <param name="equal">True when the names are equal.</param>
    /// <returns><see cref="DnsParseError.None"/>, or the reason one of the names is malformed (only the labels
    /// up to the first difference are read).</returns>
    public static DnsParseError Equal(ReadOnlySpan<byte> message, int offsetA, int offsetB, out bool equal)
    {
        equal = false;
        var a = new DnsNameReader(message, offsetA);
        var b = new DnsNameReader(message, offsetB);
        while (true)
        {
            DnsParseError error = a.Next(out ReadOnlySpan<byte> labelA);
            if (error == DnsParseError.None)
            {
                error = b.Next(out ReadOnlySpan<byte> labelB);
                if (error == DnsParseError.None)
                {
                    if (!LabelsEqual(labelA, labelB))
                    {
                        return DnsParseError.None;
                    }

                    if (labelA.IsEmpty)
                    {
                        equal = true;
                        return DnsParseError.None;
                    }

                    continue;
                }
            }

            return error;
        }
    }

    /// <summary>Writes the name at <paramref name="offset"/> without compression.</summary>
    /// <param name="message">The whole message.</param>
    /// <param name="offset">Where the name starts.</param>
    /// <param name="destination">Receives the wire form; must hold at least <see cref="MaxWireLength"/> bytes.</param>
    /// <param name="bytesWritten">The length of the wire form, terminating zero included.</param>
    /// <param name="end">The offset just after the name in place.</param>
    /// <returns><see cref="DnsParseError.None"/> or the reason the name is malformed.</returns>
    public static DnsParseError CopyUncompressed(ReadOnlySpan<byte> message, int offset, Span<byte> destination, out int bytesWritten, out int end)
    {
        var reader = new DnsNameReader(message, offset);
        bytesWritten = 0;
        end = 0;
        while (true)
        {
            DnsParseError error = reader.Next(out ReadOnlySpan<byte> label);
            if (error != DnsParseError.None)
            {
                bytesWritten = 0;
                return error;
            }

            destination[bytesWritten++] = (byte)label.Length;
            if (label.IsEmpty)
            {
                end = reader.End;
                return DnsParseError.None;
            }

            label.CopyTo(destination[bytesWritten..]);
            bytesWritten += label.Length;
        }
    }

    private static bool LabelsEqual(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        if (a.Length != b.Length)
        {
            return false;
        }

        for (int i = 0; i < a.Length; i++)
        {
            if (ToLowerAscii(a[i]) != ToLowerAscii(b[i]))
            {
                return false;
            }
        }

        return true;
    }

    private static byte ToLowerAscii(byte b) => b is >= (byte)'A' and <= (byte)'Z' ? (byte)(b | 0x20) : b;

    /// <summary>Whether <paramref name="b"/> may be in a label: a letter, a digit, <c>-</c> or <c>_</c> (what the
    /// enclave's DNS and ClientHello parsers accept in a name).</summary>
    internal static bool IsHostnameByte(byte b) =>
        b is (>= (byte)'a' and <= (byte)'z') or (>= (byte)'A' and <= (byte)'Z') or (>= (byte)'0' and <= (byte)'9') or (byte)'-' or (byte)'_';
}
