namespace Egress.Dns.Wire;

/// <summary>
/// Walks the labels of a (possibly compressed) name in a DNS message without allocating, enforcing the wire
/// limits: labels of at most 63 octets, at most 255 octets per name, no reserved label types, no reads past the
/// message. Every compression pointer must target an offset strictly below every byte read so far for this name,
/// so the walk always moves backwards on a jump and cannot loop; the jump cap is defence in depth.
/// </summary>
internal ref struct DnsNameReader
{
    /// <summary>The most pointers one name may follow (a 255-octet name has at most 127 labels, and a pointer
    /// follows at least one label except at the very start).</summary>
    private const int MaxJumps = 128;

    private const int MaxWireLength = 255;

    private readonly ReadOnlySpan<byte> message;
    private int position;
    private int lowestRead;
    private int jumps;
    private int wireLength;
    private int end;
    private bool done;

    /// <summary>Starts reading the name that begins at <paramref name="offset"/>.</summary>
    public DnsNameReader(ReadOnlySpan<byte> message, int offset)
    {
        this.message = message;
        position = offset;
        lowestRead = offset;
        end = -1;
    }

    /// <summary>The offset just after the name where it started (after its first pointer or its terminating
    /// zero); valid once <see cref="Next"/> has returned the empty root label.</summary>
    public readonly int End => end;

    /// <summary>Reads the next label.</summary>
    /// <param name="label">The label's bytes; empty once the root (the end of the name) is reached.</param>
    /// <returns><see cref="DnsParseError.None"/> or the reason the name is malformed.</returns>
    public DnsParseError Next(out ReadOnlySpan<byte> label)
    {
        label = default;
        if (done)
        {
            return DnsParseError.None;
        }

        while (true)
        {
            if (position >= message.Length)
            {
                return DnsParseError.Truncated;
            }

            int lengthOctet = message[position];
            switch (lengthOctet & 0xC0)
            {
                case 0x00:
                    // Counted with the terminating zero still to come, so a label never takes the name past 255.
                    wireLength += 1 + lengthOctet;
                    if (wireLength + (lengthOctet == 0 ? 0 : 1) > MaxWireLength)
                    {
                        return DnsParseError.NameTooLong;
                    }

                    if (lengthOctet == 0)
                    {
                        if (end < 0)
                        {
                            end = position + 1;
                        }

                        done = true;
                        return DnsParseError.None;
                    }

                    if (position + 1 + lengthOctet > message.Length)
                    {
                        return DnsParseError.Truncated;
                    }

                    label = message.Slice(position + 1, lengthOctet);
                    position += 1 + lengthOctet;
                    return DnsParseError.None;

                case 0xC0:
                    if (position + 1 >= message.Length)
                    {
                        return DnsParseError.Truncated;
                    }

                    int target = ((lengthOctet & 0x3F) << 8) | message[position + 1];

                    // No name lives in the 12-byte header: a pointer into it would read the ID and counts as a name,
                    // which differ between the enclave, the parent and the upstream (the name checked would not be
                    // the name resolved).
                    if (target >= message.Length || target < DnsHeader.Length)
                    {
                        return DnsParseError.PointerOutOfRange;
                    }

                    if (target >= lowestRead || ++jumps > MaxJumps)
                    {
                        return DnsParseError.PointerLoop;
                    }

                    if (end < 0)
                    {
                        end = position + 2;
                    }

                    lowestRead = target;
                    position = target;
                    break;

                case 0x40:
                    return DnsParseError.LabelTooLong;

                default:
                    return DnsParseError.BadLabelType;
            }
        }
    }
}
