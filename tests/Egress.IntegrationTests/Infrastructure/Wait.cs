namespace Egress.IntegrationTests.Infrastructure;

/// <summary>Bounded polling for readiness.</summary>
internal static class Wait
{
    public static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan timeout, Func<string> describeFailure)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition().ConfigureAwait(false))
        {
            if (DateTime.UtcNow >= deadline)
            {
                throw new TimeoutException($"after {timeout.TotalSeconds:F0} s: {describeFailure()}");
            }

            await Task.Delay(50).ConfigureAwait(false);
        }
    }
}
