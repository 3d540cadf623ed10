using System.Net;
using System.Net.Sockets;
using Egress.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace Egress.Host;

/// <summary>
/// The opt-in Prometheus endpoint of egress-host (<c>--metrics-listen</c> or <c>[host] metrics_listen</c>): the
/// <see cref="EgressMetrics.MeterName"/> meter exported by OpenTelemetry's Prometheus HttpListener exporter at
/// <c>http://ADDRESS:PORT/metrics</c>. Loopback only unless forced: the endpoint has no authentication.
/// </summary>
internal static class MetricsEndPoint
{
    public const string NotLoopbackProblem =
        "the metrics endpoint has no authentication: listen on a loopback address (127.0.0.1, ::1), or pass --metrics-allow-remote";

    public static bool IsLoopback(IPEndPoint endPoint) => IPAddress.IsLoopback(endPoint.Address);

    /// <summary>Exports the Egress meter at <c>http://<paramref name="listen"/>/metrics</c>, bound when the host starts.</summary>
    public static void AddPrometheus(IServiceCollection services, IPEndPoint listen)
    {
        services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("egress-host"))
            .WithMetrics(metrics => metrics
                .AddMeter(EgressMetrics.MeterName)
                .AddPrometheusHttpListener(options =>
                {
                    options.Host = listen.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{listen.Address}]" : listen.Address.ToString();
                    options.Port = listen.Port;
                }));
    }
}
