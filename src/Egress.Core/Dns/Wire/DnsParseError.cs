namespace Egress.Dns.Wire;

/// <summary>Why a DNS message (or a part of it) could not be read. Parsers return this instead of throwing.</summary>
internal enum DnsParseError
{
    /// <summary>No error: the message was read.</summary>
    None,

    /// <summary>The message ends before a field, label, record or a section that its counts announce.</summary>
    Truncated,

    /// <summary>A label length octet is 64–127: a label longer than the 63 octets RFC 1035 §2.3.4 allows
    /// (the 01 prefix was once meant for extended label types, which RFC 6891 §5 deprecates).</summary>
    LabelTooLong,

    /// <summary>A name is longer than 255 octets on the wire (length octets and terminating zero included).</summary>
    NameTooLong,

    /// <summary>A compression pointer does not point strictly before every byte already read for the same name
    /// (a self, forward or looping reference), or a name follows too many pointers.</summary>
    PointerLoop,

    /// <summary>A compression pointer targets an offset at or beyond the end of the message.</summary>
    PointerOutOfRange,

    /// <summary>A label length octet starts with the reserved bits 10.</summary>
    BadLabelType,

    /// <summary>A label holds a byte other than an ASCII letter, digit, '-' or '_', so the name has no unambiguous
    /// dotted text form (a '.' inside a label, for one, would read as a label separator).</summary>
    BadCharacter,

    /// <summary>The question count is zero.</summary>
    NoQuestion,

    /// <summary>The question count is greater than one.</summary>
    TooManyQuestions,

    /// <summary>The message is not a standard query: QR is set or the opcode is not QUERY (0).</summary>
    NotAQuery,

    /// <summary>The message is not a response to a standard query: QR is clear or the opcode is not QUERY (0).</summary>
    NotAResponse,

    /// <summary>A record's data does not fit its type: an A record whose RDLENGTH is not 4, an AAAA record whose
    /// RDLENGTH is not 16, or a CNAME whose target name does not end exactly at the end of its RDATA.</summary>
    BadRecordLength,

    /// <summary>Following CNAME records from the question name takes more than
    /// <see cref="DnsMessage.MaxCnameChainLength"/> steps (which is also how a CNAME loop shows).</summary>
    CnameChainTooLong,
}
