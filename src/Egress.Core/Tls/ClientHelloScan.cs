namespace Egress.Tls;

/// <summary>Where <see cref="ClientHelloParser"/>'s walk over a ClientHello's records stands between calls: the offset of
/// the first record not yet walked whole, and what the records before it held.</summary>
/// <param name="Offset">Bytes of whole records walked (headers included).</param>
/// <param name="Records">How many.</param>
/// <param name="Collected">Handshake bytes they carried.</param>
/// <param name="MessageLength">The handshake message's length, header included, once its header is known; -1 before.</param>
/// <param name="Header">The handshake header's bytes collected so far, big-endian.</param>
internal readonly record struct ClientHelloScan(int Offset, int Records, int Collected, int MessageLength, uint Header);
