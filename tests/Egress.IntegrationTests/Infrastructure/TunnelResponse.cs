namespace Egress.IntegrationTests.Infrastructure;

/// <summary>A tunnel v1 response: version, status byte and UTF-8 detail text.</summary>
internal sealed record TunnelResponse(byte Version, byte Status, string Detail);
