using System.Net;

namespace Egress.Interception;

/// <summary>The outcome of <see cref="OriginalDestination.Read"/>.</summary>
/// <param name="Status">Whether the connection was redirected.</param>
/// <param name="Destination">
/// The address the client connected to before redirection when <paramref name="Status"/> is
/// <see cref="OriginalDestinationStatus.Redirected"/>; otherwise <see langword="null"/>. IPv4 destinations are plain
/// IPv4 endpoints, also when the listener is a dual-mode IPv6 socket.
/// </param>
/// <param name="Detail">Why the connection is not redirected or the read failed; <see langword="null"/> when redirected.</param>
public readonly record struct OriginalDestinationResult(OriginalDestinationStatus Status, IPEndPoint? Destination, string? Detail);
