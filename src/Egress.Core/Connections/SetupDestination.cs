using System.Globalization;
using System.Net;

namespace Egress.Connections;

/// <summary>
/// What one share of the setup places (<see cref="ConnectionSetupLimit.DestinationShare"/>) is counted for: the name a
/// connection's address was learned from and its port, so that the addresses of one name that stops answering count
/// as one destination; else (an address or range entry) the address and port.
/// </summary>
/// <param name="Name">The learned name (lower case, as the forwarder learned it), or null.</param>
/// <param name="Address">The address when there is no name, else null.</param>
/// <param name="Port">The destination port.</param>
internal readonly record struct SetupDestination(string? Name, IPAddress? Address, int Port)
{
    /// <summary>The destination of a connection to <paramref name="endPoint"/>, learned from <paramref name="name"/> (null: none).</summary>
    public static SetupDestination Of(IPEndPoint endPoint, string? name) =>
        name is null ? new SetupDestination(null, endPoint.Address, endPoint.Port) : new SetupDestination(name, null, endPoint.Port);

    /// <summary>"example.com:443", or the address as an endpoint: "198.51.100.7:443", "[2001:db8::7]:443".</summary>
    public override string ToString() => Name is { } name
        ? string.Create(CultureInfo.InvariantCulture, $"{name}:{Port}")
        : new IPEndPoint(Address!, Port).ToString();
}
