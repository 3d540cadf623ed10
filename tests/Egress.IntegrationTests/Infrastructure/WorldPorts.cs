namespace Egress.IntegrationTests.Infrastructure;

/// <summary>Ports served in the world namespace (on every world address, IPv4 and IPv6).</summary>
internal static class WorldPorts
{
    public const int Http = 80;
    public const int HttpAlt = 8080;

    /// <summary>Echoes what it receives; closes after the client's EOF.</summary>
    public const int Echo = 7;

    /// <summary>Speaks first: sends <see cref="ServerBehaviours.Banner"/> on accept, then echoes.</summary>
    public const int Banner = 587;

    /// <summary>Reads until EOF, then sends <see cref="ServerBehaviours.ReplyAfterEofLength"/> deterministic bytes and closes.</summary>
    public const int ReplyAfterEof = 9001;

    /// <summary>Reads until EOF, then returns the 32-byte SHA-256 of everything it got.</summary>
    public const int Sha256Sink = 9002;

    /// <summary>Reads a request (u64 length, u64 seed, little-endian), sends that many deterministic bytes, closes.</summary>
    public const int Source = 9003;

    /// <summary>Nothing listens here: connections are refused by the world kernel.</summary>
    public const int Closed = 9999;
}
