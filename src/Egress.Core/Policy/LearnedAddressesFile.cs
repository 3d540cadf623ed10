using System.Globalization;
using System.Net;
using System.Text;
using Egress.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace Egress.Policy;

/// <summary>
/// Keeps the addresses a policy learned from DNS answers in a file, and gives them to the next run of the process: an
/// egress-enclave restarted after it crashed (bootstrap.sh's supervisor) would otherwise deny an address an application
/// resolved before the restart and kept (<c>never learned</c>) until it resolved the name again.
/// </summary>
/// <remarks>
/// <para>Written within <see cref="DefaultInterval"/> when an address or a name was learned since the last write; when
/// only expiries moved (a name learned again, a grace started), or while connections hold addresses (a name kept live
/// by a connection past its TTL is written as allowed until the next refresh is due), every <see cref="Refresh"/>: 30 s,
/// or half the grace when that is shorter, so a restart within the grace of a crash finds it; and at a stop. A write
/// that fails leaves no temporary file and is tried again after a refresh. A write that took long spaces the
/// next ones out (ten times its duration), so a large cache costs at most a tenth of a processor. What was learned in
/// the last interval before a crash is lost. Written to <c>PATH.tmp</c> (mode 0600, created anew) and renamed over the
/// file, so a reader sees a whole file or the previous one.</para>
/// <para>Restored at start through the policy, as a DNS answer is learned (<see cref="EgressPolicy.Restore"/>): a
/// name the policy no longer allows, or an internal address, is dropped, and so is a name past its expiry and grace;
/// an expiry more than a day away is cut as a TTL is. The file is trusted no more than that: its directory must belong
/// to this process's user and be writable by no one else, and every directory above it must belong to root or that
/// user and be writable by no one else unless it has the sticky bit, as /tmp has (or nothing is kept, with a
/// warning), and the file is read
/// only when what was opened (without following a link) is a regular file owned by that user, neither readable nor
/// writable by anyone else, and no larger than the cache could have written. A restore makes no room in a full cache:
/// once it holds <see cref="AllowlistCacheOptions.MaxEntries"/> addresses, a line for another is skipped and counted
/// (a warning says how many), so what comes first in the file is kept, and the writer puts the addresses open
/// connections use first (the old run kept those beyond the bound, and their expiries, the nearest, would have made
/// them the first to be evicted).</para>
/// <para>Format, version 1 (ASCII, lines end with LF): the line <c>egress-learned-addresses 1</c>, then one line per
/// name of an address, the addresses open connections used first (<see cref="AllowlistCache.Learned"/>):
/// <c>EXPIRES ADDRESS NAME</c>, where EXPIRES is when the name's allowance ends before its grace
/// (Unix time in milliseconds, UTC), ADDRESS an IPv4 or IPv6 address as .NET writes it, NAME the name asked in the
/// question (lower case, no trailing dot). <c>1765000000000 198.18.0.10 api.example.com</c>.</para>
/// </remarks>
internal sealed partial class LearnedAddressesFile : IDisposable
{
    /// <summary>The first line of a version 1 file.</summary>
    internal const string Header = "egress-learned-addresses 1";

    /// <summary>The longest line: 19 digits, an IPv6 address (45), a name (253) and two spaces.</summary>
    internal const int MaxLineLength = 19 + 1 + 45 + 1 + 253;

    /// <summary>How often the file is rewritten when something was learned since the last write: 1 s.</summary>
    internal static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(1);

    /// <summary>The longest time between writes while only expiries moved or connections hold addresses: 30 s.</summary>
    internal static readonly TimeSpan LongestRefresh = TimeSpan.FromSeconds(30);

    /// <summary>How much longer than a write took the next one waits, at least.</summary>
    internal const int WriteSpacing = 10;

    private static readonly long UnixEpochTicks = DateTime.UnixEpoch.Ticks;
    private static readonly long MaxMilliseconds = (DateTime.MaxValue.Ticks - UnixEpochTicks) / TimeSpan.TicksPerMillisecond;

    private readonly string _path;
    private readonly EgressPolicy _policy;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly TimeSpan _interval;
    private readonly Lock _saveLock = new();
    private ITimer? _timer;
    private long _writtenVersion = -1;
    private long _writtenExtensions;
    private long _writtenAt;
    private TimeSpan _nextDelay;
    private bool _failing;
    private bool _disabled;
    private bool _disposed;

    /// <summary>Creates the file's keeper; nothing is read or written before <see cref="Restore"/> and <see cref="Start"/>.</summary>
    /// <param name="path">The file: an absolute path in a directory only this process's user can write.</param>
    /// <param name="policy">The policy whose learned addresses are kept, and which checks what is restored.</param>
    /// <param name="time">The clock of the writes (the cache has its own for the expiries).</param>
    /// <param name="logger">Where what was restored and a failed write are told.</param>
    /// <param name="interval">How often the file is rewritten when something was learned (<see cref="DefaultInterval"/>).</param>
    /// <exception cref="ArgumentException"><paramref name="path"/> is not absolute.</exception>
    public LearnedAddressesFile(string path, EgressPolicy policy, TimeProvider time, ILogger logger, TimeSpan interval)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!Path.IsPathFullyQualified(path))
        {
            throw new ArgumentException($"the learned-addresses file must be an absolute path, not '{path}'", nameof(path));
        }

        _path = path;
        _policy = policy;
        _time = time;
        _logger = logger;
        _interval = interval;
        _nextDelay = interval;
    }

    /// <summary>The longest time between writes while only expiries moved or connections hold addresses:
    /// <see cref="LongestRefresh"/>, or half the cache's grace when that is shorter, never less than the interval. A name
    /// held past its TTL is written as allowed for this long from the write.</summary>
    internal TimeSpan Refresh => TimeSpan.FromTicks(Math.Max(_interval.Ticks, Math.Min(LongestRefresh.Ticks, _policy.Cache.GraceTicks / 2)));

    /// <summary>Restores what the file holds into the policy, and says what it did in one line; never throws for
    /// the file (a file that is missing, refused or unreadable restores nothing, and is replaced by the first write).
    /// Checks the directory first: one that is missing, another user's or writable by others keeps nothing (a warning,
    /// and <see cref="Start"/> then writes nothing). Call it before <see cref="Start"/>.</summary>
    /// <returns>What was restored, skipped and refused.</returns>
    public RestoreCounts Restore()
    {
        if ((OperatingSystem.IsLinux() ? DirectoryProblem(System.IO.Path.GetDirectoryName(_path)!) : "it is kept on Linux only") is { } problem)
        {
            // Anyone who can write in the directory can put a file of their own in place of this one: nothing is kept.
            _disabled = true;
            Log.NotKept(_logger, _path, problem);
            return default;
        }

        RestoreCounts counts;
        try
        {
            if (PathFileType.OpenForReading(_path, out int errno) is not { } handle)
            {
                if (errno == PathFileType.NoSuchFileError)
                {
                    Log.NoneYet(_logger, _path);
                }
                else
                {
                    Log.NotRestored(_logger, _path, errno == PathFileType.SymbolicLinkError
                        ? "it is a symbolic link"
                        : $"it cannot be opened ({System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(errno)})");
                }

                return default;
            }

            using SafeFileHandle opened = handle;
            if (Refusal(PathFileType.Describe(opened), MaxFileLength) is { } refusal)
            {
                Log.NotRestored(_logger, _path, refusal);
                return default;
            }

            using var stream = new FileStream(opened, FileAccess.Read, bufferSize: 1);
            counts = Read(stream, _policy, _policy.Cache.Now, _policy.Cache.GraceTicks);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Log.NotRestored(_logger, _path, ex.Message);
            return default;
        }

        if (!counts.HeaderValid)
        {
            Log.NotRestored(_logger, _path, counts.Empty ? "it is empty" : $"its first line is not '{Header}'");
        }
        else
        {
            Log.Restored(_logger, counts.Restored, _path, counts.Expired, counts.Refused, counts.Malformed);
            if (counts.NoRoom > 0)
            {
                Log.NoRoom(_logger, counts.NoRoom, _path, _policy.Cache.MaxEntries);
            }
        }

        return counts;
    }

    /// <summary>Starts the writes (the first within <see cref="DefaultInterval"/>); nothing when <see cref="Restore"/>
    /// found the directory unsafe.</summary>
    public void Start()
    {
        lock (_saveLock)
        {
            if (!_disposed && !_disabled)
            {
                _writtenAt = _time.GetTimestamp();
                _timer ??= _time.CreateTimer(static state => ((LearnedAddressesFile)state!).SaveIfDue(), this, _interval, Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>Stops the writes, after a last one of what the cache holds now (its expiries included).</summary>
    public void Dispose()
    {
        lock (_saveLock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _timer?.Dispose();
            if (_timer is not null)
            {
                Save();
            }
        }
    }

    /// <summary>Writes the file when an address or name was learned since the last write, or the refresh is due (only
    /// expiries moved, or connections hold addresses); then arms the next check. One check at a time: the timer is
    /// armed again only once this one is done.</summary>
    internal void SaveIfDue()
    {
        lock (_saveLock)
        {
            if (_disposed)
            {
                return;
            }

            AllowlistCache cache = _policy.Cache;
            bool refreshDue = (cache.Extensions != _writtenExtensions || cache.InUseCount > 0) && _time.GetElapsedTime(_writtenAt) >= Refresh;
            if (cache.Version != _writtenVersion || refreshDue)
            {
                Save();
            }

            _timer!.Change(_nextDelay, Timeout.InfiniteTimeSpan);
        }
    }

    private void Save()
    {
        AllowlistCache cache = _policy.Cache;
        long version = cache.Version, extensions = cache.Extensions; // read before the walk: what it misses moved them
        long started = _time.GetTimestamp();
        string temporary = _path + ".tmp";
        try
        {
            File.Delete(temporary); // a link or a file left by a crash: the new one is created, never opened
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            using (var stream = new FileStream(temporary, options))
            {
                Write(stream, cache.Learned(Refresh));
            }

            File.Move(temporary, _path, overwrite: true);
            _writtenVersion = version;
            _writtenExtensions = extensions;
            _writtenAt = _time.GetTimestamp();
            _nextDelay = TimeSpan.FromTicks(Math.Max(_interval.Ticks, _time.GetElapsedTime(started, _writtenAt).Ticks * WriteSpacing));
            if (_failing)
            {
                _failing = false;
                Log.WritingAgain(_logger, _path);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Nothing left behind (a full tmpfs is the enclave's memory), and the next try no sooner than a refresh: a
            // failing write must not walk a full cache every second.
            try
            {
                File.Delete(temporary);
            }
            catch (Exception again) when (again is IOException or UnauthorizedAccessException)
            {
            }

            _nextDelay = TimeSpan.FromTicks(Math.Max(Refresh.Ticks, _time.GetElapsedTime(started).Ticks * WriteSpacing));
            if (!_failing)
            {
                _failing = true;
                Log.WriteFailed(_logger, _path, ex.Message, _nextDelay.TotalSeconds);
            }
        }
    }

    /// <summary>The largest file the cache could have written: every address it may hold with all its names, each line
    /// at its longest. A larger one is not read.</summary>
    private long MaxFileLength => Header.Length + 1 + ((long)_policy.Cache.MaxEntries * AllowlistCache.MaxNamesPerAddress * (MaxLineLength + 1));

    /// <summary>Why nothing is kept in <paramref name="directory"/>: missing, not a directory, another user's, or
    /// writable by others; or a directory above it that another user could rename it out of (one owned by neither root
    /// nor this process's user, or writable by group or others without the sticky bit, which keeps others from renaming
    /// what is not theirs: /tmp passes); null when it is safe. The directories above it are those of the path as given
    /// and those of its real path (realpath(3)), where links in it lead (OpenSSH's StrictModes, a stricter rule, checks
    /// the real path only and makes no sticky exception).</summary>
    private static string? DirectoryProblem(string directory)
    {
        const int GroupOrOthersWrite = 0x12; // 0022
        const int Sticky = 0x200; // 01000
        try
        {
            uint user = PathFileType.EffectiveUserId();
            if (PathFileType.Describe(directory) is not { } found)
            {
                return $"its directory {directory} does not exist";
            }

            if (found.Type != PathFileType.Directory || found.Owner != user || (found.Permissions & GroupOrOthersWrite) != 0)
            {
                return found.Type != PathFileType.Directory ? $"{directory} is not a directory"
                    : found.Owner != user ? $"its directory {directory} is owned by user {found.Owner.ToString(CultureInfo.InvariantCulture)}, not by this process's ({user.ToString(CultureInfo.InvariantCulture)})"
                    : $"others may write in its directory {directory} (mode {Convert.ToString(found.Permissions, 8)}; make one only this user can write, e.g. with mktemp -d)";
            }

            // The directories above the path as given (whoever can rename one can replace a link in it), and above the
            // directory it leads to through its links.
            string real = PathFileType.RealPath(directory) ?? directory;
            foreach (string above in Above(directory).Concat(real == directory ? [] : Above(real)))
            {
                if (PathFileType.Describe(above) is not { } ancestor)
                {
                    continue; // removed since: the directory's own check above still holds
                }

                if (ancestor.Owner != 0 && ancestor.Owner != user)
                {
                    return $"{above}, above its directory, is owned by user {ancestor.Owner.ToString(CultureInfo.InvariantCulture)}, neither root nor this process's ({user.ToString(CultureInfo.InvariantCulture)}): that user could put a directory of their own in place of {directory}";
                }

                if ((ancestor.Permissions & GroupOrOthersWrite) != 0 && (ancestor.Permissions & Sticky) == 0)
                {
                    return $"others may write in {above}, above its directory (mode {Convert.ToString(ancestor.Permissions, 8)}, no sticky bit): they could put a directory of their own in place of {directory}";
                }
            }

            return null;
        }
        catch (IOException ex)
        {
            return ex.Message;
        }
    }

    private static IEnumerable<string> Above(string directory)
    {
        for (string? above = System.IO.Path.GetDirectoryName(directory); above is not null; above = System.IO.Path.GetDirectoryName(above))
        {
            yield return above;
        }
    }

    /// <summary>Why the file opened is not read (its type, owner, mode or size); null when it may be.</summary>
    private static string? Refusal(PathFileType.FileStatus file, long maxLength)
    {
        uint user = PathFileType.EffectiveUserId();
        return file.Type != PathFileType.Regular ? "it is not a regular file (a directory, a FIFO, a device)"
            : file.Owner != user ? $"it is owned by user {file.Owner.ToString(CultureInfo.InvariantCulture)}, not by this process's ({user.ToString(CultureInfo.InvariantCulture)})"
            : (file.Permissions & 0x3F) != 0 ? $"others may read or write it (mode {Convert.ToString(file.Permissions, 8)}; it must be 600)"
            : file.Size > maxLength ? $"it is larger ({file.Size.ToString(CultureInfo.InvariantCulture)} bytes) than the cache could have written ({maxLength.ToString(CultureInfo.InvariantCulture)})"
            : null;
    }

    /// <summary>Writes <paramref name="learned"/> in version 1's format; a name that format cannot carry (a byte outside
    /// printable ASCII, a space, longer than 253) is left out.</summary>
    /// <returns>The lines written after the header.</returns>
    internal static int Write(Stream stream, IEnumerable<(IPAddress Address, string Name, long ExpiresAt)> learned)
    {
        using var writer = new StreamWriter(stream, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false), bufferSize: 65536, leaveOpen: true) { NewLine = "\n" };
        writer.WriteLine(Header);
        Span<char> line = stackalloc char[MaxLineLength + 1];
        int lines = 0;
        foreach (var (address, name, expiresAt) in learned)
        {
            if (!IsWritableName(name))
            {
                continue;
            }

            // Formatted in place: a rewrite of a full cache (hundreds of thousands of lines) allocates no string per line.
            long milliseconds = Math.Clamp((expiresAt - UnixEpochTicks) / TimeSpan.TicksPerMillisecond, 0, MaxMilliseconds);
            milliseconds.TryFormat(line, out int length, default, CultureInfo.InvariantCulture);
            line[length++] = ' ';
            address.TryFormat(line[length..], out int written);
            length += written;
            line[length++] = ' ';
            name.CopyTo(line[length..]);
            length += name.Length;
            line[length++] = '\n';
            writer.Write(line[..length]);
            lines++;
        }

        return lines;
    }

    /// <summary>Whether <paramref name="name"/> is a name as the cache keeps it, which the format carries: 1 to 253
    /// printable ASCII characters other than a space, no upper case, no empty label (no leading, trailing or double
    /// dot). The reader takes only these too (fuzzing: "www.allowed.test.." was restored as "www.allowed.test.", which
    /// read back as another name), so what is written reads back as it was.</summary>
    private static bool IsWritableName(ReadOnlySpan<char> name)
    {
        if (name.IsEmpty || name.Length > 253 || name[0] == '.' || name[^1] == '.' || name.Contains("..", StringComparison.Ordinal))
        {
            return false;
        }

        foreach (char c in name)
        {
            if (c is <= ' ' or > '~' or (>= 'A' and <= 'Z'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Reads a file in version 1's format from <paramref name="stream"/> (any fragmentation) and restores each
    /// line through <paramref name="policy"/>: a name past its expiry and grace at <paramref name="now"/> is skipped, a
    /// line that is not three fields as written (<see cref="Write"/>) counted as malformed. Nothing is restored when the
    /// first line is not <see cref="Header"/>.</summary>
    /// <param name="stream">The file's bytes.</param>
    /// <param name="policy">Checks and learns each name and address (<see cref="EgressPolicy.Restore"/>).</param>
    /// <param name="now">The cache's clock (UTC ticks).</param>
    /// <param name="graceTicks">The cache's grace.</param>
    /// <exception cref="IOException">Reading failed.</exception>
    internal static RestoreCounts Read(Stream stream, EgressPolicy policy, long now, long graceTicks)
    {
        var counts = new RestoreCounts { Empty = true };
        byte[] buffer = new byte[4096];
        int start = 0, end = 0;
        bool discarding = false, first = true, eof = false;
        while (!eof)
        {
            int read = stream.Read(buffer, end, buffer.Length - end);
            eof = read == 0;
            end += read;
            counts.Empty &= read == 0;
            while (true)
            {
                int newline = buffer.AsSpan(start, end - start).IndexOf((byte)'\n');
                if (newline < 0)
                {
                    break;
                }

                if (discarding)
                {
                    discarding = false; // the rest of an overlong line, counted when it was found
                }
                else if (!Line(buffer.AsSpan(start, newline), ref first, ref counts, policy, now, graceTicks))
                {
                    return counts; // not this format: nothing more is read
                }

                start += newline + 1;
            }

            if (end - start > MaxLineLength)
            {
                if (!discarding)
                {
                    if (first)
                    {
                        return counts;
                    }

                    counts.Malformed++;
                    discarding = true;
                }

                start = end;
            }

            if (eof && end > start && !discarding)
            {
                // A last line without its LF: a write cut short (never one of ours: the file is renamed into place whole).
                if (first)
                {
                    return counts;
                }

                counts.Malformed++;
            }

            buffer.AsSpan(start, end - start).CopyTo(buffer);
            end -= start;
            start = 0;
        }

        return counts;
    }

    /// <summary>One line: the header when <paramref name="first"/>, else a name; false when the header is not this
    /// format's.</summary>
    private static bool Line(ReadOnlySpan<byte> line, ref bool first, ref RestoreCounts counts, EgressPolicy policy, long now, long graceTicks)
    {
        if (first)
        {
            first = false;
            counts.HeaderValid = line.SequenceEqual(Encoding.ASCII.GetBytes(Header));
            return counts.HeaderValid;
        }

        if (!TryParse(line, out long expiresAt, out IPAddress? address, out string? name))
        {
            counts.Malformed++;
        }
        else if (expiresAt + graceTicks <= now)
        {
            counts.Expired++;
        }
        else
        {
            switch (policy.Restore(name, address, expiresAt))
            {
                case RestoreOutcome.Restored:
                    counts.Restored++;
                    break;
                case RestoreOutcome.Refused:
                    counts.Refused++;
                    break;
                default:
                    counts.NoRoom++;
                    break;
            }
        }

        return true;
    }

    /// <summary>Parses <c>EXPIRES ADDRESS NAME</c> exactly as <see cref="Write"/> writes it (canonical address text,
    /// decimal milliseconds without sign or leading zeros, a printable name).</summary>
    internal static bool TryParse(ReadOnlySpan<byte> line, out long expiresAt, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IPAddress? address, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? name)
    {
        expiresAt = 0;
        address = null;
        name = null;
        int first = line.IndexOf((byte)' ');
        if (first <= 0 || first > 19 || (line[0] == (byte)'0' && first > 1))
        {
            return false;
        }

        ReadOnlySpan<byte> rest = line[(first + 1)..];
        int second = rest.IndexOf((byte)' ');
        if (second <= 0 || second > 45)
        {
            return false;
        }

        ReadOnlySpan<byte> number = line[..first], addressText = rest[..second], nameText = rest[(second + 1)..];
        if (!long.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out long milliseconds) || milliseconds > MaxMilliseconds)
        {
            return false;
        }

        Span<char> chars = stackalloc char[45];
        for (int i = 0; i < addressText.Length; i++)
        {
            chars[i] = (char)addressText[i];
        }

        ReadOnlySpan<char> text = chars[..addressText.Length];
        if (text.Contains('%') || !IPAddress.TryParse(text, out IPAddress? parsed) || !text.SequenceEqual(parsed.ToString()))
        {
            return false; // only the canonical form: no "127.1", leading zeros or scope id (a DNS answer has none)
        }

        if (nameText.IsEmpty || nameText.Length > 253 || nameText.ContainsAnyExceptInRange((byte)'!', (byte)'~'))
        {
            return false;
        }

        string parsedName = Encoding.ASCII.GetString(nameText);
        if (!IsWritableName(parsedName))
        {
            return false;
        }

        expiresAt = UnixEpochTicks + (milliseconds * TimeSpan.TicksPerMillisecond);
        address = parsed;
        name = parsedName;
        return true;
    }

    /// <summary>What <see cref="Restore"/> did.</summary>
    internal struct RestoreCounts
    {
        /// <summary>Whether the first line was <see cref="Header"/> (false: nothing was read past it).</summary>
        public bool HeaderValid;

        /// <summary>Whether the file had no bytes at all.</summary>
        public bool Empty;

        /// <summary>Names learned again.</summary>
        public int Restored;

        /// <summary>Names past their expiry and grace.</summary>
        public int Expired;

        /// <summary>Names the policy no longer allows, or internal addresses.</summary>
        public int Refused;

        /// <summary>Lines not in the format.</summary>
        public int Malformed;

        /// <summary>Names of new addresses that found the cache at its size bound (<see cref="RestoreOutcome.NoRoom"/>).</summary>
        public int NoRoom;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 610, Level = LogLevel.Information, Message = "learned addresses: {Path} holds none yet (a first start); what DNS answers teach is kept there from now on, for a restart")]
        public static partial void NoneYet(ILogger logger, string path);

        [LoggerMessage(EventId = 611, Level = LogLevel.Information, Message = "learned addresses: restored {Restored} name-address pairs from {Path} (skipped: {Expired} expired, {Refused} refused by the policy as a DNS answer would be, {Malformed} malformed lines); kept there from now on, for a restart")]
        public static partial void Restored(ILogger logger, int restored, string path, int expired, int refused, int malformed);

        [LoggerMessage(EventId = 612, Level = LogLevel.Warning, Message = "learned addresses: nothing restored from {Path}: {Reason}; this run starts with nothing learned and replaces the file with what it learns")]
        public static partial void NotRestored(ILogger logger, string path, string reason);

        [LoggerMessage(EventId = 613, Level = LogLevel.Warning, Message = "learned addresses: writing {Path} failed ({Error}); a restart would not find what was learned since. Retried every {RetrySeconds} s; said again when it works")]
        public static partial void WriteFailed(ILogger logger, string path, string error, double retrySeconds);

        [LoggerMessage(EventId = 614, Level = LogLevel.Information, Message = "learned addresses: writing {Path} works again")]
        public static partial void WritingAgain(ILogger logger, string path);

        [LoggerMessage(EventId = 615, Level = LogLevel.Warning, Message = "learned addresses: not kept in {Path}: {Reason}; a restarted egress-enclave will not allow what this one learns until the application resolves it again")]
        public static partial void NotKept(ILogger logger, string path, string reason);

        [LoggerMessage(EventId = 616, Level = LogLevel.Warning, Message = "learned addresses: {NoRoom} name-address pairs from {Path} not restored: the cache already held its {MaxEntries} addresses (cache_max_entries); those open connections used were restored first. Raise cache_max_entries if this run needs more")]
        public static partial void NoRoom(ILogger logger, int noRoom, string path, int maxEntries);
    }
}
