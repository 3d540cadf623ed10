namespace Egress.IntegrationTests.Infrastructure;

/// <summary>One line of dig's ANSWER SECTION: owner name (with the trailing dot), TTL, type and data.</summary>
internal sealed record DigRecord(string Name, int Ttl, string Type, string Data);
