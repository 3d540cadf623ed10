namespace Egress.Tunnel;

/// <summary>What one connect learned about the parent's protocol version, for the enclave's log.</summary>
internal enum TunnelVersionNews
{
    /// <summary>Nothing new.</summary>
    None,

    /// <summary>The parent answered a version 2 request with UnsupportedVersion for the first time: it speaks only version 1.</summary>
    Version1Only,

    /// <summary>A re-probe found the parent still speaking only version 1.</summary>
    StillVersion1Only,

    /// <summary>A parent that spoke only version 1 now accepts version 2 (it was upgraded).</summary>
    Version2Again,
}

/// <summary>
/// Which version the enclave asks for: 2, unless the parent recently answered a version 2 request with
/// UnsupportedVersion (an egress-host older than version 2); then version 1 for <see cref="ReprobeInterval"/>, after
/// which the next stream tries version 2 again, as parents are upgraded in place. Thread-safe.
/// </summary>
internal sealed class TunnelVersionProbe(TimeProvider time)
{
    /// <summary>How long the enclave speaks version 1 after the parent refused version 2, before it asks again.</summary>
    public static readonly TimeSpan ReprobeInterval = TimeSpan.FromSeconds(60);

    private const long Never = long.MinValue;

    private long _version1Since = Never;
    private int _everVersion1;

    /// <summary>The version the next stream's request should use.</summary>
    public byte NextVersion
    {
        get
        {
            long since = Interlocked.Read(ref _version1Since);
            return since != Never && time.GetElapsedTime(since) < ReprobeInterval ? TunnelCodec.Version : TunnelCodec.Version2;
        }
    }

    /// <summary>Records that the parent refused a version 2 request as an unsupported version.</summary>
    public TunnelVersionNews RefusedVersion2()
    {
        Interlocked.Exchange(ref _version1Since, time.GetTimestamp());
        return Interlocked.Exchange(ref _everVersion1, 1) == 0 ? TunnelVersionNews.Version1Only : TunnelVersionNews.StillVersion1Only;
    }

    /// <summary>Records that the parent accepted a version 2 request.</summary>
    public TunnelVersionNews AcceptedVersion2()
    {
        if (Interlocked.Exchange(ref _version1Since, Never) == Never)
        {
            return TunnelVersionNews.None;
        }

        Interlocked.Exchange(ref _everVersion1, 0); // a later downgrade is news again
        return TunnelVersionNews.Version2Again;
    }
}
