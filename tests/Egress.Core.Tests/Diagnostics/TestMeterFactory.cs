using System.Diagnostics.Metrics;

namespace Egress.Tests.Diagnostics;

/// <summary>An <see cref="IMeterFactory"/> of its own, so a test's collectors see only its own meters.</summary>
internal sealed class TestMeterFactory : IMeterFactory
{
    private readonly List<Meter> _meters = [];

    public Meter Create(MeterOptions options)
    {
        var meter = new Meter(options.Name, options.Version, options.Tags, scope: this);
        _meters.Add(meter);
        return meter;
    }

    public void Dispose() => _meters.ForEach(meter => meter.Dispose());
}
