namespace Egress.Tls;

/// <summary>
/// The rule of <see cref="TlsServerNameMode"/>, in one place: what a connection to a DNS-learned address may send first.
/// </summary>
internal static class ServerNameCheck
{
    /// <summary>Decides a parsed first flight.</summary>
    /// <param name="mode">The configured mode; <see cref="TlsServerNameMode.Off"/> refuses nothing.</param>
    /// <param name="status">What <see cref="ClientHelloParser.Parse(ReadOnlySpan{byte}, out ClientHello)"/> found (<see cref="ClientHelloStatus.NeedMore"/>:
    /// the client ended its stream first).</param>
    /// <param name="hello">The ClientHello, when <paramref name="status"/> says there is one.</param>
    /// <param name="learnedNames">The names the destination address was learned from.</param>
    /// <param name="isAllowed">Whether an entry allows a name (the policy's <c>CheckName</c>).</param>
    /// <param name="reportOnly">Report mode: a name the address was not learned from is
    /// <see cref="ServerNameRefusal.NotLearned"/> even when no entry allows it either, since an entry for the name would
    /// not let enforce relay it (the report says what would).</param>
    /// <returns><see cref="ServerNameRefusal.None"/> to relay the bytes, else why not.</returns>
    public static ServerNameRefusal Decide(
        TlsServerNameMode mode, ClientHelloStatus status, ClientHello hello, IReadOnlyList<string> learnedNames, Func<string, bool> isAllowed, bool reportOnly = false)
    {
        if (mode == TlsServerNameMode.Off)
        {
            return ServerNameRefusal.None;
        }

        switch (status)
        {
            case ClientHelloStatus.NotTls:
                return ServerNameRefusal.None;
            case ClientHelloStatus.NeedMore:
                return ServerNameRefusal.Truncated;
            case ClientHelloStatus.Malformed:
                return ServerNameRefusal.Malformed;
            case ClientHelloStatus.TooLarge:
                return ServerNameRefusal.TooLarge;
        }

        if (hello.HasEncryptedClientHello)
        {
            // The outer server name is the client-facing server's public name; the real one is encrypted. Passing on the
            // public name would open every tenant behind it.
            return ServerNameRefusal.EncryptedClientHello;
        }

        if (hello.ServerName is not { } name)
        {
            return mode == TlsServerNameMode.IfPresent ? ServerNameRefusal.None : ServerNameRefusal.NoServerName;
        }

        bool learned = false;
        foreach (string learnedName in learnedNames)
        {
            learned |= SameName(learnedName, name);
        }

        return !learned && reportOnly ? ServerNameRefusal.NotLearned
            : !isAllowed(name) ? ServerNameRefusal.NotAllowed
            : learned ? ServerNameRefusal.None
            : ServerNameRefusal.NotLearned;
    }

    /// <summary>Whether two DNS names are equal: ASCII case-insensitive, a trailing dot ignored.</summary>
    internal static bool SameName(string a, string b) =>
        a.AsSpan().TrimEnd('.').Equals(b.AsSpan().TrimEnd('.'), StringComparison.OrdinalIgnoreCase);
}
