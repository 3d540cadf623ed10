using Egress.Connections;
using Egress.Relay;

namespace Egress.Tests.Connections;

public sealed class DescriptorBudgetTests
{
    // Open at the start: measured 121 (egress-host) and 126 (egress-enclave), both JIT, in the namespace topology.
    [TestCase(384, 121, 64, 199, 99)]
    [TestCase(512, 126, 64, 322, 161)]
    [TestCase(1024, 120, 128, 776, 388)]
    [TestCase(2000, 0, 250, 1750, 875)]
    [TestCase(65536, 120, 1024, 64392, 32196)]
    [TestCase(1 << 20, 0, 1024, (1 << 20) - 1024, ((1 << 20) - 1024) / 2)]
    public void TheLimitLessWhatIsOpenAndTheReserveIsSharedAtTwoDescriptorsPerConnection(long openFiles, long openAtStart, long reserve, long capacity, int connections)
    {
        var budget = DescriptorBudget.ForLimit(openFiles, openAtStart);

        Assert.Multiple(() =>
        {
            Assert.That(DescriptorBudget.ReserveFor(openFiles), Is.EqualTo(reserve));
            Assert.That(budget.Capacity, Is.EqualTo(capacity));
            Assert.That(ConnectionAdmission.DerivedLimit(budget), Is.EqualTo(connections));
            Assert.That(new ConnectionAdmission(0, "enclave.max_connections", "connection", budget).Limit, Is.EqualTo(connections));
        });
    }

    [Test]
    public void ALimitBelowTheReserveStillAdmitsOneConnection()
    {
        var budget = DescriptorBudget.ForLimit(32, 0);

        Assert.That(budget.Capacity, Is.Zero);
        Assert.That(ConnectionAdmission.DerivedLimit(budget), Is.EqualTo(1), "the budget refuses it anyway while it has nothing");
    }

    [Test]
    public void TakingBeyondTheCapacityFailsAndTakesNothing()
    {
        var budget = new DescriptorBudget(openFileLimit: 100, capacity: 5);

        Assert.That(budget.TryTake(2), Is.True);
        Assert.That(budget.TryTake(2), Is.True);
        Assert.That(budget.TryTake(2), Is.False);
        Assert.That(budget.InUse, Is.EqualTo(4));
        budget.Release(2);
        Assert.That(budget.TryTake(2), Is.True);
        Assert.That(budget.InUse, Is.EqualTo(4));
    }

    [Test]
    public void AConfiguredLimitRefusesTheConnectionBeyondItNamingTheKey()
    {
        var admission = new ConnectionAdmission(2, "enclave.max_connections", "connection", DescriptorBudget.ForLimit(65536, 0));

        Assert.That(admission.TryAdmit(out _), Is.True);
        Assert.That(admission.TryAdmit(out _), Is.True);
        Assert.That(admission.TryAdmit(out string? refusal), Is.False);
        Assert.That(refusal, Is.EqualTo("connection limit reached (enclave.max_connections = 2)"));
        Assert.That(admission.Admitted, Is.EqualTo(2), "a refusal holds no place");

        admission.Release();
        Assert.That(admission.TryAdmit(out _), Is.True, "a released place is free again");
    }

    [Test]
    public void ADerivedLimitNamesTheOpenFilesLimitItCameFrom()
    {
        var budget = DescriptorBudget.ForLimit(384, 0);
        var admission = new ConnectionAdmission(0, "host.max_streams", "stream", budget);
        for (int i = 0; i < 160; i++)
        {
            Assert.That(admission.TryAdmit(out _), Is.True);
        }

        Assert.That(admission.TryAdmit(out string? refusal), Is.False);
        Assert.That(refusal, Is.EqualTo("stream limit reached (host.max_streams = 160, derived from RLIMIT_NOFILE = 384)"));
        Assert.That(budget.InUse, Is.EqualTo(320));
    }

    [Test]
    public void DescriptorsHeldElsewhereRefuseAConnectionBelowItsLimit()
    {
        var budget = new DescriptorBudget(openFileLimit: 512, capacity: 6);
        var admission = new ConnectionAdmission(10, "enclave.max_connections", "connection", budget);
        Assert.That(budget.TryTake(SplicePipe.Descriptors * 2), Is.True, "two pipes");

        Assert.That(admission.TryAdmit(out _), Is.True);
        Assert.That(admission.TryAdmit(out string? refusal), Is.False);
        Assert.That(refusal, Is.EqualTo("descriptor limit reached (6 of 6 usable descriptors in use, RLIMIT_NOFILE = 512)"));
        Assert.That(admission.Admitted, Is.EqualTo(1));

        admission.Release();
        Assert.That(budget.InUse, Is.EqualTo(4));
    }

    [Test]
    public void ANewSplicePipeIsPaidForFromTheBudgetAndRefusedWhenItIsSpent()
    {
        var budget = new DescriptorBudget(openFileLimit: 512, capacity: SplicePipe.Descriptors);
        var rented = new List<SplicePipe>();
        try
        {
            // Pooled pipes (from other tests) are paid for already; past them, one new pipe fits and the next does not.
            IOException? refused = null;
            for (int i = 0; i < 200 && refused is null; i++)
            {
                try
                {
                    rented.Add(SplicePipe.Rent(budget));
                }
                catch (IOException ex)
                {
                    refused = ex;
                }
            }

            Assert.That(refused?.Message, Does.Contain("descriptor limit reached (2 of 2 usable descriptors in use, RLIMIT_NOFILE = 512)"));
            Assert.That(SplicePipe.TryRent(budget), Is.Null, "the relay copies instead");
            Assert.That(budget.InUse, Is.EqualTo(SplicePipe.Descriptors));
            rented[^1].Dispose();
            Assert.That(budget.InUse, Is.Zero, "a closed pipe gives its descriptors back");
            rented.RemoveAt(rented.Count - 1);
        }
        finally
        {
            foreach (var pipe in rented)
            {
                SplicePipe.Return(pipe);
            }
        }
    }

    [Test]
    public void TheProcessBudgetComesFromRlimitNofile()
    {
        string line = File.ReadLines("/proc/self/limits").Single(l => l.StartsWith("Max open files", StringComparison.Ordinal));
        long soft = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3], System.Globalization.CultureInfo.InvariantCulture);

        Assert.That(OpenFileLimit.Current(), Is.EqualTo(Math.Min(soft, OpenFileLimit.Unlimited)));
    }
}
