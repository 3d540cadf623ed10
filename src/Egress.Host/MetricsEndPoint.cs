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
/// <c>http://ADDRESS:PORT/metrics</c>. Loopback only unless forced: the endpoint has no authentication. IPv4 only: the
/// exporter serves with <see cref="HttpListener"/>, whose managed implementation (Linux) takes the first ':' after
/// <c>http://</c> for the port's separator and so refuses every IPv6 literal prefix ("Invalid port in prefix"), and
/// binds a host name to its first DNS address (no host name is sure to give a chosen IPv6 address); the host is refused
/// before it starts instead (<see cref="IPv6Problem"/>).
/// </summary>
internal static class MetricsEndPoint
{
    public const string NotLoopbackProblem =
        "the metrics endpoint has no authentication: listen on a loopback address (127.0.0.1), or pass --metrics-allow-remote";

    public const string IPv6Problem =
        "egress-host's metrics endpoint cannot listen on an IPv6 address (its HTTP server, .NET's HttpListener, refuses IPv6 literals on Linux): listen on 127.0.0.1:PORT";

    /// <summary>Whether the endpoint can listen there: an IPv4 address (see <see cref="IPv6Problem"/>).</summary>
    public static bool CanListenOn(IPEndPoint endPoint) => endPoint.AddressFamily == AddressFamily.InterNetwork;

    public static bool IsLoopback(IPEndPoint endPoint) => IPAddress.IsLoopback(endPoint.Address);

    /// <summary>Exports the Egress meter at <c>http://<paramref name="listen"/>/metrics</c>, bound when the host starts.</summary>
    public static void AddPrometheus(IServiceCollection services, IPEndPoint listen)
    {
        if (!CanListenOn(listen))
        {
            throw new ArgumentException(IPv6Problem, nameof(listen));
        }

        services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("egress-host"))
            .WithMetrics(metrics => metrics
                .AddMeter(EgressMetrics.MeterName)
                .AddPrometheusHttpListener(options =>
                {
                    options.Host = listen.Address.ToString();
                    options.Port = listen.Port;
                }));
    }
}
