namespace Egress.IntegrationTests.Infrastructure;

/// <summary>The servers running in the world namespace for a fixture.</summary>
internal sealed record WorldServices(
    NginxServer Nginx,
    WorldServer Echo,
    WorldServer Banner,
    WorldServer ReplyAfterEof,
    WorldServer Sha256Sink,
    WorldServer Source)
{
    public IEnumerable<WorldServer> CSharpServers => [Echo, Banner, ReplyAfterEof, Sha256Sink, Source];
}
