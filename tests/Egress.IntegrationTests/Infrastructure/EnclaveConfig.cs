using System.Globalization;
using System.Text;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>Writes enclave.toml for a test (only keys the config module knows: unknown keys are errors).</summary>
internal static class EnclaveConfig
{
    /// <summary>The allowlist used by the TCP suites: one IP literal, one IPv4 CIDR, one IPv6 prefix.</summary>
    public static readonly string[] DefaultDestinations = ["198.18.0.10", "198.18.1.0/24", "2001:db8::/64"];

    /// <summary>The config: the allowlist, the host's connect timeout, dnsmasq as the host's DNS upstream and, when given, the [dns] cache times.</summary>
    public static string Render(IEnumerable<string> destinations, int connectTimeoutMs = 2000, int? ttlFloorSeconds = null, int? graceSeconds = null)
    {
        var list = string.Join(", ", destinations.Select(destination => $"\"{destination}\""));
        var builder = new StringBuilder();
        builder.AppendLine("[egress]");
        builder.AppendLine("enabled = true");
        builder.AppendLine(CultureInfo.InvariantCulture, $"destinations = [{list}]");
        builder.AppendLine();
        builder.AppendLine("[host]");
        builder.AppendLine(CultureInfo.InvariantCulture, $"connect_timeout_ms = {connectTimeoutMs}");
        builder.AppendLine(CultureInfo.InvariantCulture, $"dns_upstreams = [\"{WorldAddresses.Dns}\"]");
        if (ttlFloorSeconds is not null || graceSeconds is not null)
        {
            builder.AppendLine();
            builder.AppendLine("[dns]");
            if (ttlFloorSeconds is { } floor)
            {
                builder.AppendLine(CultureInfo.InvariantCulture, $"ttl_floor_seconds = {floor}");
            }

            if (graceSeconds is { } grace)
            {
                builder.AppendLine(CultureInfo.InvariantCulture, $"grace_seconds = {grace}");
            }
        }

        return builder.ToString();
    }
}
