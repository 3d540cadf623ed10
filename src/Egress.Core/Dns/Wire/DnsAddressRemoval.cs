using System.Buffers;
using System.Buffers.Binary;
using Egress.Policy;

namespace Egress.Dns.Wire;

/// <summary>
/// Removes A and AAAA records (class IN) of a response's answer section whose address is one of a given set, as a
/// resolver that strips private addresses from public answers does (Unbound's
/// <c>private-address</c>): the rest of the message is kept byte for byte, ANCOUNT drops by the records removed, and
/// every name compression pointer (RFC 1035 §4.1.4) that pointed past a removed record is moved back by its length.
/// A message this cannot rewrite safely is left as it is: one that does not parse, more than one question, a pointer
/// into a removed record or to anything but a label of a name read here (a compressor only points at an earlier
/// name's labels), or a record whose data might hold a compressed name of a type not read here (RFC 3597 §4).
/// An RRSIG over the RRset no longer covers what is left (a validating stub would reject the RRset), and a rewritten
/// message has its AD bit cleared (RFC 4035 §3.2.3): the upstream vouched for the RRsets it validated, not for the cut one.
/// </summary>
internal static class DnsAddressRemoval
{
    /// <summary>A message of up to twice this many bytes keeps its compression pointers' offsets on the stack.</summary>
    private const int StackPointers = 256;

    /// <summary>An answer of up to this many records keeps its list of records to remove on the stack.</summary>
    private const int StackCuts = 64;

    /// <summary>Removes the answer-section A/AAAA records whose address is in <paramref name="addresses"/>.</summary>
    /// <param name="message">The whole response; rewritten in place when a record is removed.</param>
    /// <param name="addresses">The addresses to remove, as <see cref="AddressValue"/>s: an IPv4 address and its
    /// IPv4-mapped IPv6 form are one value, so <c>A 127.0.0.1</c> and <c>AAAA ::ffff:127.0.0.1</c> both go.</param>
    /// <param name="removed">How many records were removed.</param>
    /// <returns>The message's new length (its old one when nothing was removed).</returns>
    public static int Remove(Span<byte> message, IReadOnlySet<UInt128> addresses, out int removed)
    {
        removed = 0;
        if (addresses.Count == 0 || !DnsHeader.TryRead(message, out DnsHeader header) || header.QdCount != 1)
        {
            return message.Length;
        }

        // Room for every compression pointer the message can hold (one per two bytes at most) and for every answer
        // record: on the stack for an ordinary answer, rented for a long one (a rebinding answer of hundreds of internal
        // records must lose every one of them, not be left whole).
        int maxPointers = message.Length / 2;
        bool onStack = maxPointers <= StackPointers && header.AnCount <= StackCuts;
        int[]? pointers = onStack ? null : ArrayPool<int>.Shared.Rent(maxPointers);
        ushort[]? targets = onStack ? null : ArrayPool<ushort>.Shared.Rent(maxPointers);
        Cut[]? cut = onStack ? null : ArrayPool<Cut>.Shared.Rent(Math.Max(1, (int)header.AnCount));
        try
        {
            var names = new Names(pointers ?? stackalloc int[StackPointers], stackalloc ulong[(message.Length + 63) / 64]);
            return RemoveRecords(
                message, addresses, header, ref names, cut ?? stackalloc Cut[StackCuts], targets ?? stackalloc ushort[StackPointers], out removed);
        }
        finally
        {
            if (!onStack)
            {
                ArrayPool<int>.Shared.Return(pointers!);
                ArrayPool<ushort>.Shared.Return(targets!);
                ArrayPool<Cut>.Shared.Return(cut!);
            }
        }
    }

    // Remove's work; cut has room for every answer record, targets for every pointer names can hold.
    private static int RemoveRecords(
        Span<byte> message, IReadOnlySet<UInt128> addresses, DnsHeader header, ref Names names, scoped Span<Cut> cut, scoped Span<ushort> targets, out int removed)
    {
        removed = 0;
        if (!names.Add(message, DnsHeader.Length, out int questionEnd) || message.Length - questionEnd < 4)
        {
            return message.Length;
        }

        int recordCount = header.AnCount + header.NsCount + header.ArCount;
        int count = 0;
        int removedThrough = 0;
        int offset = questionEnd + 4;
        for (int i = 0; i < recordCount; i++)
        {
            if (DnsRecord.TryRead(message, offset, out DnsRecord record, out int end) != DnsParseError.None
                || !names.Add(message, record.OwnerOffset, out _)
                || !AddDataNames(message, record, ref names))
            {
                return message.Length;
            }

            if (i < header.AnCount && record.IsAddress && Contains(addresses, message.Slice(record.DataOffset, record.DataLength)))
            {
                removedThrough += end - offset;
                cut[count++] = new Cut(offset, end, removedThrough);
            }

            offset = end;
        }

        cut = cut[..count];
        if (count == 0 || offset != message.Length) // bytes after the last record: not a message to rewrite
        {
            return message.Length;
        }

        // A kept pointer must point at a label of a kept name: into a removed record it would dangle, and anywhere
        // else the name it reads may run through bytes that move or go.
        ReadOnlySpan<int> pointers = names.Pointers;
        for (int i = 0; i < pointers.Length; i++)
        {
            int target = BinaryPrimitives.ReadUInt16BigEndian(message[pointers[i]..]) & 0x3FFF;
            if (!IsInside(cut, pointers[i]) && (!names.IsLabel(target) || IsInside(cut, target)))
            {
                return message.Length;
            }

            targets[i] = (ushort)target;
        }

        int length = Compact(message, cut);
        for (int i = 0; i < pointers.Length; i++)
        {
            if (!IsInside(cut, pointers[i]))
            {
                int moved = pointers[i] - RemovedBefore(cut, pointers[i]);
                BinaryPrimitives.WriteUInt16BigEndian(message[moved..], (ushort)(0xC000 | (targets[i] - RemovedBefore(cut, targets[i]))));
            }
        }

        BinaryPrimitives.WriteUInt16BigEndian(message[6..], (ushort)(header.AnCount - count));

        // AD vouched for the RRsets the upstream validated; one of them is now cut, so the message no longer says so.
        BinaryPrimitives.WriteUInt16BigEndian(message[2..], (ushort)(header.Flags & ~DnsHeader.AuthenticDataFlag));
        removed = count;
        return length;
    }

    /// <summary>Records the names of the record's data for the types whose data may hold a compressed name; false for
    /// a type whose data might and is not read here.</summary>
    private static bool AddDataNames(ReadOnlySpan<byte> message, DnsRecord record, ref Names names)
    {
        ReadOnlySpan<byte> data = message[..(record.DataOffset + record.DataLength)];
        switch (record.Type)
        {
            case 2 or 5 or 12 or 39: // NS, CNAME, PTR, DNAME: one name
                return names.Add(data, record.DataOffset, out _);
            case 6: // SOA: two names, then five numbers
                return names.Add(data, record.DataOffset, out int rname) && names.Add(data, rname, out _);
            case 15: // MX: a preference, then a name
                return record.DataLength > 2 && names.Add(data, record.DataOffset + 2, out _);
            case 33: // SRV: priority, weight, port, then a name (some servers compress it)
                return record.DataLength > 6 && names.Add(data, record.DataOffset + 6, out _);
            case 1 or 28 or 16 or 41 or 43 or 46 or 47 or 48 or 50 or 51 or 64 or 65 or 99 or 257:
                // A, AAAA, TXT, OPT, DS, RRSIG, NSEC, DNSKEY, NSEC3, NSEC3PARAM, SVCB, HTTPS, SPF, CAA: no compressed name
                return true;
            default:
                return false;
        }
    }

    /// <summary>The names read so far: where each label (and each pointer) starts, and where the pointers are.</summary>
    private ref struct Names(Span<int> pointers, Span<ulong> labels)
    {
        private readonly Span<int> _pointers = pointers;
        private readonly Span<ulong> _labels = labels;
        private int _pointerCount;

        public readonly ReadOnlySpan<int> Pointers => _pointers[.._pointerCount];

        public readonly bool IsLabel(int offset) => offset / 64 < _labels.Length && (_labels[offset / 64] & (1UL << (offset % 64))) != 0;

        /// <summary>Reads the name at <paramref name="offset"/> up to its first pointer or its root label, marking
        /// its labels and recording its pointer; false when it runs past the data or the pointers are too many.</summary>
        public bool Add(ReadOnlySpan<byte> message, int offset, out int end)
        {
            end = 0;
            while (offset < message.Length)
            {
                byte length = message[offset];
                _labels[offset / 64] |= 1UL << (offset % 64);
                if (length == 0)
                {
                    end = offset + 1;
                    return true;
                }

                if ((length & 0xC0) == 0xC0)
                {
                    if (offset + 2 > message.Length || _pointerCount == _pointers.Length)
                    {
                        return false;
                    }

                    _pointers[_pointerCount++] = offset;
                    end = offset + 2;
                    return true;
                }

                if ((length & 0xC0) != 0)
                {
                    return false; // the extended label types of RFC 6891 §5 are not in use
                }

                offset += 1 + length;
            }

            return false;
        }
    }

    private static bool Contains(IReadOnlySet<UInt128> addresses, ReadOnlySpan<byte> data) => addresses.Contains(AddressValue.Of(data));

    /// <summary>A removed record's bytes [<paramref name="Start"/>, <paramref name="End"/>), and the bytes removed up to
    /// its end with it (the records are in message order, so starts, ends and the running total all rise).</summary>
    private readonly record struct Cut(int Start, int End, int RemovedThrough);

    /// <summary>How many removed records start at or before <paramref name="offset"/> (a binary search: a long answer
    /// with as many pointers as records must not cost their product).</summary>
    private static int StartingAtOrBefore(ReadOnlySpan<Cut> cut, int offset)
    {
        int low = 0, high = cut.Length;
        while (low < high)
        {
            int middle = (int)((uint)(low + high) >> 1);
            if (cut[middle].Start <= offset)
            {
                low = middle + 1;
            }
            else
            {
                high = middle;
            }
        }

        return low;
    }

    private static bool IsInside(ReadOnlySpan<Cut> cut, int offset)
    {
        int starting = StartingAtOrBefore(cut, offset);
        return starting > 0 && offset < cut[starting - 1].End;
    }

    /// <summary>The bytes removed before <paramref name="offset"/>, an offset outside every removed record.</summary>
    private static int RemovedBefore(ReadOnlySpan<Cut> cut, int offset)
    {
        int starting = StartingAtOrBefore(cut, offset);
        return starting > 0 ? cut[starting - 1].RemovedThrough : 0;
    }

    /// <summary>Moves the kept bytes over the removed records (in order); returns the new length.</summary>
    private static int Compact(Span<byte> message, ReadOnlySpan<Cut> cut)
    {
        int write = cut[0].Start;
        for (int i = 0; i < cut.Length; i++)
        {
            int keepFrom = cut[i].End;
            int keepTo = i + 1 < cut.Length ? cut[i + 1].Start : message.Length;
            message[keepFrom..keepTo].CopyTo(message[write..]);
            write += keepTo - keepFrom;
        }

        return write;
    }
}
