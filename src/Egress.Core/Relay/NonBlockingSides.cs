namespace Egress.Relay;

/// <summary>
/// Which of a relay's sockets its owner knows to be in non-blocking mode already (O_NONBLOCK set by our own call, never
/// cleared): a splicing relay sets the mode only on the others, one ioctl(FIONBIO) less per side and connection. Only
/// what the owner made sure of: a socket wrongly named here would make splice(2) wait on an epoll thread.
/// </summary>
[Flags]
internal enum NonBlockingSides
{
    /// <summary>Neither is known: the relay sets both.</summary>
    None = 0,

    /// <summary>Side A is.</summary>
    A = 1,

    /// <summary>Side B is.</summary>
    B = 2,

    /// <summary>Both are.</summary>
    Both = A | B,
}
