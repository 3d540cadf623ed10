namespace Egress.IntegrationTests.Infrastructure;

/// <summary>The suite needs root for namespaces and iptables; without it every fixture skips loudly.</summary>
internal static class Root
{
    public static bool IsRoot => Native.GetEffectiveUserId() == 0;

    public static void RequireOrIgnore()
    {
        if (!IsRoot)
        {
            Assert.Ignore("SKIPPED: the integration suite needs root (network namespaces, veth, iptables). Run `sudo dotnet test tests/Egress.IntegrationTests`.");
        }
    }
}
