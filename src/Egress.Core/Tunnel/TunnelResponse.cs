namespace Egress.Tunnel;

/// <summary>The parent's answer on a tunnel stream.</summary>
/// <param name="Status">The outcome; anything but <see cref="TunnelStatus.Ok"/> ends the stream.</param>
/// <param name="Detail">
/// Optional human-readable reason for logs. It is encoded as UTF-8 and cut to 255 bytes at a character boundary;
/// an empty detail reads back as <see langword="null"/>. Treat a received detail as untrusted text.
/// </param>
internal readonly record struct TunnelResponse(TunnelStatus Status, string? Detail = null)
{
    /// <summary>
    /// The version the response is written in: the request's version when the parent read a request, otherwise
    /// <see cref="TunnelCodec.Version"/> (1), which every enclave reads.
    /// </summary>
    public byte Version { get; init; } = TunnelCodec.Version;
}
