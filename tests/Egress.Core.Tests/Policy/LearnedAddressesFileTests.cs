using System.Net;
using System.Text;
using Egress.Fuzzing;
using Egress.Policy;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Policy;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class LearnedAddressesFileTests
{
    private static readonly IPAddress Address = IPAddress.Parse("198.18.0.10");
    private static readonly string[] Destinations = ["api.example.com:443", "*.allowed.test:443"];

    private FakeTimeProvider _time = null!;
    private string _directory = null!;
    private string _path = null!;

    [SetUp]
    public void SetUp()
    {
        _time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 5, 9, 0, 0, TimeSpan.Zero));
        _directory = Directory.CreateTempSubdirectory("egress-learned-").FullName;
        _path = Path.Combine(_directory, "learned-addresses");
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_directory, recursive: true);

    /// <summary>The reason for the file: egress-enclave restarted by bootstrap.sh's supervisor denied an address the
    /// application had resolved before the restart (<c>never learned</c>) until it resolved the name again.</summary>
    [Test]
    public void WhatOneRunLearnedTheNextRunAllowsWithTheSameExpiry()
    {
        var (before, _) = NewPolicy();
        before.Learn("api.example.com", Address, TimeSpan.FromSeconds(300));
        using (var file = NewFile(before))
        {
            file.Start();
            _time.Advance(LearnedAddressesFile.DefaultInterval);
        }

        _time.Advance(TimeSpan.FromSeconds(10)); // the restart
        var (after, cache) = NewPolicy();
        Assert.That(after.CheckConnection(Address, 443, out _).IsAllowed, Is.False, "a new run knows nothing by itself");

        var counts = NewFile(after).Restore();

        PolicyDecision decision = after.CheckConnection(Address, 443, out AddressHold? hold);
        hold?.Dispose();
        Assert.Multiple(() =>
        {
            Assert.That(counts.Restored, Is.EqualTo(1));
            Assert.That(decision.IsAllowed, Is.True);
            Assert.That(decision.Reason, Is.EqualTo(DecisionReason.Learned));
            Assert.That(decision.Subject, Is.EqualTo("api.example.com"));
            // 300 s learned, 11 s later (the write's interval, the restart): 289 s left, not the floor or a fresh TTL.
            Assert.That(cache.Lookup(Address).Time, Is.EqualTo(TimeSpan.FromSeconds(289)));
        });
    }

    [Test]
    public void ANameInItsGraceIsRestoredInItsGraceAndOnePastItIsSkipped()
    {
        var other = IPAddress.Parse("198.18.0.11");
        var (before, _) = NewPolicy();
        before.Learn("api.example.com", Address, TimeSpan.FromSeconds(30));
        before.Learn("www.allowed.test", other, TimeSpan.FromSeconds(100));
        Save(before);

        _time.Advance(TimeSpan.FromSeconds(119)); // with the write's 1 s: api 90 s past its expiry (grace 60 s), www 20 s into its grace
        var (after, cache) = NewPolicy();
        var counts = NewFile(after).Restore();

        Assert.Multiple(() =>
        {
            Assert.That(counts.Restored, Is.EqualTo(1));
            Assert.That(counts.Expired, Is.EqualTo(1));
            Assert.That(cache.Lookup(Address).State, Is.EqualTo(CacheState.NeverLearned));
            Assert.That(cache.Lookup(other).InGrace, Is.True);
            Assert.That(cache.Lookup(other).Time, Is.EqualTo(TimeSpan.FromSeconds(40)));
        });
    }

    /// <summary>From a review: a full cache keeps the addresses open connections hold beyond its bound, written with
    /// the nearest expiries (held past their TTL); restored into the same bound, each one evicted the previous one (the
    /// earliest expiry), so after a restart the addresses the application was using were the ones denied. They are now
    /// written first, and a restore makes no room: what does not fit is skipped and said.</summary>
    [Test]
    public void AFullCacheRestoresTheAddressesOpenConnectionsUsedAndSkipsWhatDoesNotFit()
    {
        var logger = new FakeLogger();
        var (before, _) = NewPolicy(maxEntries: 64);
        var used = Enumerable.Range(1, 4).Select(i => IPAddress.Parse($"198.18.1.{i}")).ToList();
        var holds = new List<AddressHold>();
        foreach (IPAddress address in used)
        {
            before.Learn($"held{address.GetAddressBytes()[3]}.allowed.test", address, TimeSpan.FromSeconds(30));
            Assert.That(before.CheckConnection(address, 443, out AddressHold? hold).IsAllowed, Is.True);
            holds.Add(hold!);
        }

        for (int i = 0; i < 64; i++)
        {
            before.Learn($"idle{i}.allowed.test", IPAddress.Parse($"198.18.2.{i}"), TimeSpan.FromSeconds(300));
        }

        before.Learn("soon.allowed.test", IPAddress.Parse("198.18.3.1"), TimeSpan.FromSeconds(60)); // evicts an idle one (the bound)
        _time.Advance(TimeSpan.FromSeconds(40)); // the used names are past their TTL, kept by their connections
        Save(before);
        holds.ForEach(hold => hold.Dispose());
        string[] lines = File.ReadAllLines(_path);
        Assert.Multiple(() =>
        {
            Assert.That(lines[1..5].Select(line => line.Split(' ')[1]), Is.EquivalentTo(used.Select(address => address.ToString())), "the addresses in use first");
            Assert.That(lines[^1], Does.EndWith(" soon.allowed.test"), "then latest expiry first: the one a restore skips is the one eviction would take");
        });

        _time.Advance(TimeSpan.FromSeconds(5)); // the restart (the connections closed with it)
        var (after, cache) = NewPolicy(maxEntries: 64);
        var counts = new LearnedAddressesFile(_path, after, _time, logger, LearnedAddressesFile.DefaultInterval).Restore();

        Assert.Multiple(() =>
        {
            foreach (IPAddress address in used)
            {
                PolicyDecision decision = after.CheckConnection(address, 443, out AddressHold? hold);
                hold?.Dispose();
                Assert.That(decision.IsAllowed, Is.True, $"{address}, used by a connection before the restart: {decision}");
            }

            Assert.That(counts.Restored, Is.EqualTo(64));
            Assert.That(counts.NoRoom, Is.EqualTo(4));
            Assert.That(cache.Lookup(IPAddress.Parse("198.18.3.1")).State, Is.EqualTo(CacheState.NeverLearned), "the earliest expiry of the rest was skipped");
            Assert.That(cache.Evictions, Is.Zero, "a restore makes no room");
            Assert.That(Lines(logger), Has.One.Contains($"learned addresses: 4 name-address pairs from {_path} not restored: the cache already held its 64 addresses (cache_max_entries)"));
        });
    }

    /// <summary>The file is checked against the policy of the run that reads it, as a DNS answer is.</summary>
    [Test]
    public void ANameThePolicyNoLongerAllowsAndAnInternalAddressAreNotRestored()
    {
        long expires = _time.GetUtcNow().AddMinutes(5).ToUnixTimeMilliseconds();
        File.WriteAllText(_path, $"{LearnedAddressesFile.Header}\n{expires} 198.18.0.10 api.example.com\n{expires} 198.18.0.11 gone.example.com\n{expires} 10.0.0.1 api.example.com\n{expires} 169.254.169.254 x.allowed.test\n");
        File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var (policy, cache) = NewPolicy();

        var counts = NewFile(policy).Restore();

        Assert.Multiple(() =>
        {
            Assert.That(counts.Restored, Is.EqualTo(1));
            Assert.That(counts.Refused, Is.EqualTo(3));
            Assert.That(cache.Lookup(IPAddress.Parse("198.18.0.11")).State, Is.EqualTo(CacheState.NeverLearned));
            Assert.That(cache.Lookup(IPAddress.Parse("10.0.0.1")).State, Is.EqualTo(CacheState.NeverLearned));
            Assert.That(cache.Lookup(IPAddress.Parse("169.254.169.254")).State, Is.EqualTo(CacheState.NeverLearned));
        });
    }

    [Test]
    public void TheFileIsWrittenWithMode600AndNoTemporaryFileIsLeft()
    {
        var (policy, _) = NewPolicy();
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(300));
        long expires = _time.GetUtcNow().AddSeconds(300).ToUnixTimeMilliseconds();

        Save(policy);

        Assert.Multiple(() =>
        {
            Assert.That(File.GetUnixFileMode(_path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
            Assert.That(Directory.GetFiles(_directory).Select(Path.GetFileName), Is.EqualTo(new[] { "learned-addresses" }));
            Assert.That(File.ReadAllText(_path), Is.EqualTo($"egress-learned-addresses 1\n{expires} 198.18.0.10 api.example.com\n"));
        });
    }

    /// <summary>A temporary file left by a crash, or a link an attacker put in its place, is replaced, never written through.</summary>
    [Test]
    public void ALinkWhereTheTemporaryFileGoesIsNotWrittenThrough()
    {
        string target = Path.Combine(_directory, "target");
        File.WriteAllText(target, "untouched");
        File.CreateSymbolicLink(_path + ".tmp", target);
        var (policy, _) = NewPolicy();
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(300));

        Save(policy);

        Assert.Multiple(() =>
        {
            Assert.That(File.ReadAllText(target), Is.EqualTo("untouched"));
            Assert.That(File.ReadAllText(_path), Does.Contain("198.18.0.10 api.example.com"));
        });
    }

    [Test]
    public void TheFileIsRewrittenOnlyWhenSomethingWasLearned()
    {
        var (policy, _) = NewPolicy();
        using var file = NewFile(policy);
        file.Start();
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(300));
        _time.Advance(LearnedAddressesFile.DefaultInterval);
        Assert.That(File.Exists(_path), Is.True, "written within the interval");

        File.Delete(_path);
        Step(LearnedAddressesFile.DefaultInterval * 5);
        Assert.That(File.Exists(_path), Is.False, "nothing learned: not rewritten");

        policy.Learn("www.allowed.test", IPAddress.Parse("198.18.0.11"), TimeSpan.FromSeconds(300));
        _time.Advance(LearnedAddressesFile.DefaultInterval);
        Assert.That(File.ReadAllText(_path), Does.Contain("198.18.0.11 www.allowed.test").And.Contain("198.18.0.10 api.example.com"));
    }

    /// <summary>A stop (egress-enclave's SIGTERM) writes what was learned since the last write, without waiting for the timer.</summary>
    [Test]
    public void AStopWritesWhatWasLearnedSinceTheLastWrite()
    {
        var (policy, _) = NewPolicy();
        var file = NewFile(policy);
        file.Start();
        _time.Advance(LearnedAddressesFile.DefaultInterval);
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(300));

        file.Dispose();
        policy.Learn("www.allowed.test", IPAddress.Parse("198.18.0.11"), TimeSpan.FromSeconds(300));
        Step(LearnedAddressesFile.DefaultInterval * 3);

        Assert.That(File.ReadAllText(_path), Does.Contain("198.18.0.10 api.example.com").And.Not.Contain("www.allowed.test"));
    }

    /// <summary>A name kept live only by an open connection, past its TTL, is written with a recent expiry every 30 s
    /// (half the 60 s grace), so that the grace after a restart (which closed the connection) covers a reconnect.</summary>
    [Test]
    public void WhileAConnectionHoldsAnAddressPastItsTtlTheFileIsRefreshedEvery30Seconds()
    {
        var (policy, _) = NewPolicy();
        using var file = NewFile(policy);
        file.Start();
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(30));
        Step(LearnedAddressesFile.DefaultInterval);
        Assert.That(policy.CheckConnection(Address, 443, out AddressHold? hold).IsAllowed, Is.True);
        var writes = new List<long>();
        for (int second = 0; second < 600; second++)
        {
            long before = WrittenExpiry();
            Step(TimeSpan.FromSeconds(1));
            if (WrittenExpiry() != before)
            {
                writes.Add(_time.GetUtcNow().ToUnixTimeMilliseconds());
            }
        }

        hold!.Dispose();
        Assert.Multiple(() =>
        {
            Assert.That(file.Refresh, Is.EqualTo(TimeSpan.FromSeconds(30)));
            Assert.That(writes, Has.Count.InRange(19, 20), "every 30 s over 10 minutes (the first once the TTL ran out)");
            Assert.That(writes.Zip(writes.Skip(1), (a, b) => b - a), Is.All.EqualTo(30_000));
            Assert.That(_time.GetUtcNow().ToUnixTimeMilliseconds() - WrittenExpiry(), Is.LessThanOrEqualTo(30_000));
        });
    }

    /// <summary>From a review: the last connection's close starts the name's grace, which a stop did not write (it
    /// wrote only what was learned), so a restart ended the grace early.</summary>
    [Test]
    public void TheGraceThatStartsWhenTheLastConnectionClosesIsWrittenAtTheStop()
    {
        var (policy, _) = NewPolicy();
        var file = NewFile(policy);
        file.Start();
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(30));
        Assert.That(policy.CheckConnection(Address, 443, out AddressHold? hold).IsAllowed, Is.True);
        Step(TimeSpan.FromSeconds(61)); // refreshed at 31 s and 61 s
        Step(TimeSpan.FromSeconds(20));
        hold!.Dispose(); // the grace starts now, at 81 s

        file.Dispose();

        Assert.That(WrittenExpiry(), Is.EqualTo(_time.GetUtcNow().ToUnixTimeMilliseconds()));
    }

    /// <summary>A second review: the grace a connection's close starts was written only at a stop, so a crash after
    /// the close restored the older expiry. It is written within the refresh.</summary>
    [Test]
    public void TheGraceThatStartsWhenTheLastConnectionClosesIsWrittenWithinTheRefresh()
    {
        var (policy, _) = NewPolicy();
        using var file = NewFile(policy);
        file.Start();
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(30));
        Assert.That(policy.CheckConnection(Address, 443, out AddressHold? hold).IsAllowed, Is.True);
        Step(TimeSpan.FromSeconds(81));
        hold!.Dispose(); // the grace starts now
        long closed = _time.GetUtcNow().ToUnixTimeMilliseconds();

        Step(file.Refresh + TimeSpan.FromSeconds(1));

        Assert.That(WrittenExpiry(), Is.EqualTo(closed));
    }

    /// <summary>A second review: a name answered again after its grace (remembered, never written) was counted as an
    /// expiry that moved, so it waited for the refresh; it is a name learned anew, written within the interval.</summary>
    [Test]
    public void ANameAnsweredAgainAfterItsGraceIsWrittenWithinTheInterval()
    {
        var (policy, _) = NewPolicy();
        using var file = NewFile(policy);
        file.Start();
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(30));
        Step(TimeSpan.FromSeconds(120)); // past its TTL and grace: no longer written
        policy.Learn("www.allowed.test", IPAddress.Parse("198.18.0.11"), TimeSpan.FromSeconds(300));
        Step(LearnedAddressesFile.DefaultInterval);
        Assert.That(File.ReadAllText(_path), Does.Not.Contain("api.example.com"));

        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(30));
        Step(LearnedAddressesFile.DefaultInterval);

        Assert.That(File.ReadAllText(_path), Does.Contain("198.18.0.10 api.example.com"));
    }

    /// <summary>A second review: a write that failed was tried again every second (a full cache walked each time) and
    /// left its temporary file behind; it leaves nothing and waits for the refresh.</summary>
    [Test]
    public void AFailedWriteLeavesNoTemporaryFileAndIsTriedAgainOnlyAfterTheRefresh()
    {
        var logger = new FakeLogger();
        var (policy, _) = NewPolicy();
        using var file = new LearnedAddressesFile(_path, policy, _time, logger, LearnedAddressesFile.DefaultInterval);
        file.Start();
        Directory.CreateDirectory(_path);
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(300));
        Step(LearnedAddressesFile.DefaultInterval);
        Directory.Delete(_path);

        Step(file.Refresh - TimeSpan.FromSeconds(1));
        bool writtenBeforeTheRefresh = File.Exists(_path);
        Step(TimeSpan.FromSeconds(1));

        Assert.Multiple(() =>
        {
            Assert.That(File.Exists(_path + ".tmp"), Is.False);
            Assert.That(writtenBeforeTheRefresh, Is.False);
            Assert.That(File.Exists(_path), Is.True);
            Assert.That(Lines(logger), Has.One.Contains("; a restart would not find what was learned since. Retried every 30 s"));
        });
    }

    /// <summary>From a review: an expiry read from the file was not cut as a TTL is, so one line could keep an address
    /// allowed for thousands of years.</summary>
    [Test]
    public void ARestoredExpiryIsCutToADayAsATtlIs()
    {
        File.WriteAllText(_path, $"{LearnedAddressesFile.Header}\n253402300799000 198.18.0.10 api.example.com\n");
        File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var (policy, cache) = NewPolicy();

        NewFile(policy).Restore();

        Assert.That(cache.Lookup(Address).Time, Is.EqualTo(TimeSpan.FromDays(1)));
    }

    /// <summary>A name learned again only moves its expiry: written within the refresh, not every second, so a busy
    /// name does not rewrite a large file each second; a new name is written within the interval.</summary>
    [Test]
    public void ANameLearnedAgainIsWrittenWithinTheRefreshAndANewOneWithinTheInterval()
    {
        var (policy, _) = NewPolicy();
        using var file = NewFile(policy);
        file.Start();
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(300));
        Step(LearnedAddressesFile.DefaultInterval);
        long first = WrittenExpiry();

        Step(TimeSpan.FromSeconds(5));
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(300));
        Step(TimeSpan.FromSeconds(5));
        Assert.That(WrittenExpiry(), Is.EqualTo(first), "an extension alone waits for the refresh");

        Step(file.Refresh);
        Assert.That(WrittenExpiry(), Is.EqualTo(first + 6_000), "written within the refresh (learned again 6 s after the first)");

        policy.Learn("www.allowed.test", IPAddress.Parse("198.18.0.11"), TimeSpan.FromSeconds(300));
        Step(LearnedAddressesFile.DefaultInterval);
        Assert.That(File.ReadAllText(_path), Does.Contain("www.allowed.test"));
    }

    /// <summary>From a review: the directory was not checked, so in one others can write a file could be swapped in.</summary>
    [Test]
    public void NothingIsKeptInADirectoryOthersCanWrite()
    {
        WriteValidFile();
        File.SetUnixFileMode(_directory, (UnixFileMode)Convert.ToInt32("1777", 8));
        var logger = new FakeLogger();
        var (policy, cache) = NewPolicy();
        using var file = new LearnedAddressesFile(_path, policy, _time, logger, LearnedAddressesFile.DefaultInterval);

        file.Restore();
        file.Start();
        File.Delete(_path);
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(300));
        Step(TimeSpan.FromSeconds(3));

        Assert.Multiple(() =>
        {
            Assert.That(cache.Count, Is.EqualTo(1), "only what this run learned");
            Assert.That(File.Exists(_path), Is.False, "nothing written");
            Assert.That(Lines(logger), Has.One.Contains($"not kept in {_path}: others may write in its directory {_directory} (mode 1777"));
        });
    }

    /// <summary>Whoever can rename a directory above the file's own can put a directory of their own, with a file of
    /// their own, in its place: such a path keeps nothing, unless the one above has the sticky bit (as /tmp has), which
    /// keeps others from renaming what is not theirs.</summary>
    [TestCase("777", false)]
    [TestCase("1777", true)]
    [TestCase("755", true)]
    [Platform("Linux")]
    public void ADirectoryAboveTheFilesOwnThatOthersCouldRenameItOutOfKeepsNothing(string aboveMode, bool kept)
    {
        string own = Path.Combine(_directory, "state");
        Directory.CreateDirectory(own);
        File.SetUnixFileMode(own, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string path = Path.Combine(own, "learned-addresses");
        File.WriteAllText(path, $"{LearnedAddressesFile.Header}\n{ValidLine()}\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.SetUnixFileMode(_directory, (UnixFileMode)Convert.ToInt32(aboveMode, 8));
        var logger = new FakeLogger();
        var (policy, cache) = NewPolicy();
        using var file = new LearnedAddressesFile(path, policy, _time, logger, LearnedAddressesFile.DefaultInterval);

        file.Restore();

        Assert.Multiple(() =>
        {
            Assert.That(cache.Count, Is.EqualTo(kept ? 1 : 0));
            Assert.That(Lines(logger), kept
                ? Has.None.Contains("not kept")
                : Has.One.Contains($"not kept in {path}: others may write in {_directory}, above its directory (mode 777, no sticky bit): they could put a directory of their own in place of {own}"));
        });
    }

    /// <summary>The code review: a link in the path hid the directories above its target. The directories above the
    /// real path (realpath(3)) are checked too.</summary>
    [Test]
    [Platform("Linux")]
    public void ADirectoryAboveALinksTargetThatOthersCouldRenameItOutOfKeepsNothing()
    {
        string shared = Path.Combine(_directory, "shared");
        string own = Path.Combine(shared, "state");
        Directory.CreateDirectory(own);
        File.SetUnixFileMode(own, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(shared, (UnixFileMode)Convert.ToInt32("777", 8));
        string linked = Path.Combine(_directory, "linked");
        Directory.CreateDirectory(linked);
        File.SetUnixFileMode(linked, (UnixFileMode)Convert.ToInt32("755", 8));
        string link = Path.Combine(linked, "state");
        Directory.CreateSymbolicLink(link, own);
        string path = Path.Combine(link, "learned-addresses");
        File.WriteAllText(path, $"{LearnedAddressesFile.Header}\n{ValidLine()}\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var logger = new FakeLogger();
        var (policy, cache) = NewPolicy();
        using var file = new LearnedAddressesFile(path, policy, _time, logger, LearnedAddressesFile.DefaultInterval);

        file.Restore();

        Assert.Multiple(() =>
        {
            Assert.That(cache.Count, Is.Zero);
            Assert.That(Lines(logger), Has.One.Contains($"not kept in {path}: others may write in {shared}, above its directory (mode 777, no sticky bit)"));
        });
    }

    [Test]
    public void AFifoIsNotWaitedForAndAFileLargerThanTheCacheCouldWriteIsNotRead()
    {
        Assert.That(Mkfifo(_path, Convert.ToInt32("600", 8)), Is.Zero);
        var logger = new FakeLogger();
        var (policy, cache) = NewPolicy(maxEntries: 1);
        new LearnedAddressesFile(_path, policy, _time, logger, LearnedAddressesFile.DefaultInterval).Restore();
        File.Delete(_path);
        File.WriteAllText(_path, LearnedAddressesFile.Header + "\n" + string.Concat(Enumerable.Repeat(ValidLine() + "\n", 100)));
        File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);

        new LearnedAddressesFile(_path, policy, _time, logger, LearnedAddressesFile.DefaultInterval).Restore();

        Assert.Multiple(() =>
        {
            Assert.That(cache.Count, Is.EqualTo(0));
            Assert.That(Lines(logger)[0], Does.Contain("it is not a regular file"));
            Assert.That(Lines(logger)[1], Does.Contain("than the cache could have written"));
        });
    }

    [TestCase("0644", "others may read or write it (mode 644")]
    [TestCase("0620", "others may read or write it (mode 620")]
    public void AFileOthersCanReadOrWriteIsNotRestored(string mode, string reason)
    {
        WriteValidFile();
        File.SetUnixFileMode(_path, (UnixFileMode)Convert.ToInt32(mode, 8));
        var logger = new FakeLogger();
        var (policy, cache) = NewPolicy();

        var counts = new LearnedAddressesFile(_path, policy, _time, logger, LearnedAddressesFile.DefaultInterval).Restore();

        Assert.Multiple(() =>
        {
            Assert.That(counts.Restored, Is.EqualTo(0));
            Assert.That(cache.Count, Is.EqualTo(0));
            Assert.That(Lines(logger), Has.One.Contains("nothing restored from " + _path + ": " + reason));
        });
    }

    [Test]
    public void ALinkToAFileIsNotFollowed()
    {
        WriteValidFile();
        File.Move(_path, _path + ".real");
        File.CreateSymbolicLink(_path, _path + ".real");
        var logger = new FakeLogger();
        var (policy, cache) = NewPolicy();

        new LearnedAddressesFile(_path, policy, _time, logger, LearnedAddressesFile.DefaultInterval).Restore();

        Assert.Multiple(() =>
        {
            Assert.That(cache.Count, Is.EqualTo(0));
            Assert.That(Lines(logger), Has.One.Contains("nothing restored from " + _path + ": it is a symbolic link"));
        });
    }

    [Test]
    public void AMissingFileIsAFirstStartAndAnotherFormatRestoresNothing()
    {
        var logger = new FakeLogger();
        var (policy, cache) = NewPolicy();
        new LearnedAddressesFile(_path, policy, _time, logger, LearnedAddressesFile.DefaultInterval).Restore();
        File.WriteAllText(_path, "egress-learned-addresses 2\n" + ValidLine() + "\n");
        File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);

        var counts = new LearnedAddressesFile(_path, policy, _time, logger, LearnedAddressesFile.DefaultInterval).Restore();

        Assert.Multiple(() =>
        {
            Assert.That(counts.HeaderValid, Is.False);
            Assert.That(cache.Count, Is.EqualTo(0));
            Assert.That(Lines(logger)[0], Does.Contain("holds none yet (a first start)"));
            Assert.That(Lines(logger)[1], Does.Contain("its first line is not 'egress-learned-addresses 1'"));
        });
    }

    [Test]
    public void AWriteThatFailsIsToldOnceAndItsRecoveryOnce()
    {
        var logger = new FakeLogger();
        var (policy, _) = NewPolicy();
        using var file = new LearnedAddressesFile(_path, policy, _time, logger, LearnedAddressesFile.DefaultInterval);
        file.Start();
        Directory.CreateDirectory(_path); // rename(2) cannot replace a directory with a file
        policy.Learn("api.example.com", Address, TimeSpan.FromSeconds(300));
        Step(LearnedAddressesFile.DefaultInterval * 3);
        Directory.Delete(_path);
        Step(file.Refresh); // a failed write is tried again after a refresh

        Assert.Multiple(() =>
        {
            Assert.That(Lines(logger).Count(line => line.Contains("writing " + _path + " failed")), Is.EqualTo(1));
            Assert.That(Lines(logger).Count(line => line.Contains("writing " + _path + " works again")), Is.EqualTo(1));
            Assert.That(File.ReadAllText(_path), Does.Contain("api.example.com"));
        });
    }

    [TestCase("1796429100000 198.18.0.10 api.example.com", true)]
    [TestCase("1796429100000 2001:db8::10 api.example.com", true)]
    [TestCase("0 198.18.0.10 a", true)]
    [TestCase("01796429100000 198.18.0.10 api.example.com", false)]
    [TestCase("-1 198.18.0.10 api.example.com", false)]
    [TestCase("+1 198.18.0.10 api.example.com", false)]
    [TestCase("99999999999999999999 198.18.0.10 api.example.com", false)]
    [TestCase("1796429100000 127.1 api.example.com", false)]
    [TestCase("1796429100000 198.018.0.10 api.example.com", false)]
    [TestCase("1796429100000 fe80::1%2 api.example.com", false)]
    [TestCase("1796429100000 2001:DB8::10 api.example.com", false)]
    [TestCase("1796429100000 198.18.0.10", false)]
    [TestCase("1796429100000 198.18.0.10 ", false)]
    [TestCase("1796429100000  198.18.0.10 api.example.com", false)]
    [TestCase("1796429100000 198.18.0.10 api example.com", false)]
    [TestCase("1796429100000 198.18.0.10 api.example.com\r", false)]
    [TestCase("", false)]
    // afl-fuzz: "www.allowed.test.." was restored as "www.allowed.test.", which read back as another name.
    [TestCase("1796429100000 198.18.0.10 www.allowed.test.", false)]
    [TestCase("1796429100000 198.18.0.10 www.allowed.test..", false)]
    [TestCase("1796429100000 198.18.0.10 .www.allowed.test", false)]
    [TestCase("1796429100000 198.18.0.10 www..allowed.test", false)]
    [TestCase("1796429100000 198.18.0.10 WWW.allowed.test", false)]
    public void ALineIsReadOnlyAsItIsWritten(string line, bool valid)
    {
        bool parsed = LearnedAddressesFile.TryParse(Encoding.ASCII.GetBytes(line), out long expiresAt, out IPAddress? address, out string? name);

        Assert.That(parsed, Is.EqualTo(valid));
        if (valid)
        {
            string[] fields = line.Split(' ');
            Assert.Multiple(() =>
            {
                Assert.That(DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(fields[0])).UtcTicks, Is.EqualTo(expiresAt));
                Assert.That(address!.ToString(), Is.EqualTo(fields[1]));
                Assert.That(name, Is.EqualTo(fields[2]));
            });
        }
    }

    [Test]
    public void ANameLongerThan253OrNotPrintableAsciiIsRefused()
    {
        Assert.Multiple(() =>
        {
            Assert.That(LearnedAddressesFile.TryParse(Encoding.ASCII.GetBytes("1 198.18.0.10 " + new string('a', 253)), out _, out _, out _), Is.True);
            Assert.That(LearnedAddressesFile.TryParse(Encoding.ASCII.GetBytes("1 198.18.0.10 " + new string('a', 254)), out _, out _, out _), Is.False);
            Assert.That(LearnedAddressesFile.TryParse([.. Encoding.ASCII.GetBytes("1 198.18.0.10 a"), 0xC3, 0xA9], out _, out _, out _), Is.False);
            Assert.That(LearnedAddressesFile.TryParse(Encoding.ASCII.GetBytes("1 198.18.0.10 a\tb"), out _, out _, out _), Is.False);
        });
    }

    [Test]
    public void ANameTheFormatCannotCarryIsLeftOutOfTheFile()
    {
        using var stream = new MemoryStream();
        int lines = LearnedAddressesFile.Write(stream, [(Address, "a b", 0), (Address, new string('a', 254), 0), (Address, "ok.example", 0)]);

        Assert.Multiple(() =>
        {
            Assert.That(lines, Is.EqualTo(1));
            Assert.That(Encoding.ASCII.GetString(stream.ToArray()), Is.EqualTo("egress-learned-addresses 1\n0 198.18.0.10 ok.example\n"));
        });
    }

    /// <summary>However the file's bytes arrive, and with an overlong line or a last line without its LF among them, the
    /// reader counts the same and restores the same.</summary>
    [Test]
    public void TheReaderGivesTheSameCountsForEveryFragmentation()
    {
        long expires = _time.GetUtcNow().AddMinutes(5).ToUnixTimeMilliseconds();
        string text = $"{LearnedAddressesFile.Header}\n{expires} 198.18.0.10 api.example.com\n{expires} 198.18.0.11 {new string('b', 5000)}\n"
            + $"{expires} 198.18.0.12 x.allowed.test\n{expires} 198.18.0.13 evil.example\nnot a line\n{expires} 198.18.0.14 y.allowed.test";
        byte[] bytes = Encoding.ASCII.GetBytes(text);

        foreach (int receive in new[] { bytes.Length, 1, 2, 3, 7, 320, 321, 4096 })
        {
            var (policy, cache) = NewPolicy();
            var counts = LearnedAddressesFile.Read(new TrickleStream(bytes, receive), policy, cache.Now, cache.GraceTicks);

            Assert.Multiple(() =>
            {
                Assert.That(counts.HeaderValid, Is.True, $"receive {receive}");
                Assert.That(counts.Restored, Is.EqualTo(2), $"receive {receive}");
                Assert.That(counts.Refused, Is.EqualTo(1), $"receive {receive}");
                Assert.That(counts.Malformed, Is.EqualTo(3), $"receive {receive}: the overlong line, 'not a line', the last line without its LF");
                Assert.That(cache.Lookup(IPAddress.Parse("198.18.0.12")).State, Is.EqualTo(CacheState.Live), $"receive {receive}");
            });
        }
    }

    /// <summary>Random bytes and random mutations of a valid file keep the reader's contract (the fuzz target's, which
    /// afl-fuzz runs for longer: fuzz/run.sh learned-addresses).</summary>
    [Test]
    public void RandomAndMutatedFilesKeepTheReadersContract()
    {
        var random = new Random(20261205);
        byte[] valid = Encoding.ASCII.GetBytes($"{LearnedAddressesFile.Header}\n{ValidLine()}\n1796429100000 2001:db8::10 www.allowed.test\n");
        for (int i = 0; i < 2000; i++)
        {
            byte[] input;
            if (i % 2 == 0)
            {
                input = new byte[random.Next(0, 600)];
                random.NextBytes(input);
            }
            else
            {
                input = [.. valid];
                for (int flips = random.Next(1, 4); flips > 0; flips--)
                {
                    input[random.Next(input.Length)] = (byte)random.Next(256);
                }
            }

            Assert.DoesNotThrow(() => FuzzTarget.Find("learned-addresses")!.Run(input), Convert.ToHexString(input));
        }
    }

    private static List<string> Lines(FakeLogger logger) => [.. logger.Collector.GetSnapshot().Select(record => record.Message)];

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    private static extern int Mkfifo(string path, int mode);

    /// <summary>Advances the clock a second at a time, as a real one passes (the fake fires a re-armed timer once per
    /// advance).</summary>
    private void Step(TimeSpan total)
    {
        for (TimeSpan done = TimeSpan.Zero; done < total; done += TimeSpan.FromSeconds(1))
        {
            _time.Advance(TimeSpan.FromSeconds(1));
        }
    }

    /// <summary>The expiry on the file's first line (Unix milliseconds).</summary>
    private long WrittenExpiry() => long.Parse(File.ReadAllText(_path).Split('\n')[1].Split(' ')[0]);

    private (EgressPolicy Policy, AllowlistCache Cache) NewPolicy(int maxEntries = 65536)
    {
        var cache = new AllowlistCache(new AllowlistCacheOptions { TimeProvider = _time, MaxEntries = maxEntries });
        return (EgressPolicy.Create(enabled: true, Destinations, cache), cache);
    }

    private LearnedAddressesFile NewFile(EgressPolicy policy) =>
        new(_path, policy, _time, NullLogger.Instance, LearnedAddressesFile.DefaultInterval);

    private void Save(EgressPolicy policy)
    {
        using var file = NewFile(policy);
        file.Start();
        _time.Advance(LearnedAddressesFile.DefaultInterval);
    }

    private string ValidLine() => $"{_time.GetUtcNow().AddMinutes(5).ToUnixTimeMilliseconds()} 198.18.0.10 api.example.com";

    private void WriteValidFile()
    {
        File.WriteAllText(_path, $"{LearnedAddressesFile.Header}\n{ValidLine()}\n");
        File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }
}
