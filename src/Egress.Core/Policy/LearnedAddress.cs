namespace Egress.Policy;

/// <summary>
/// The names one address was learned from. Immutable: the cache swaps in a new instance on every change, so
/// lookups read it without locks.
/// </summary>
internal sealed class LearnedAddress
{
    private readonly LearnedName[] _names;

    private LearnedAddress(LearnedName[] names)
    {
        _names = names;
        LearnedName latest = names[0];
        foreach (LearnedName name in names)
        {
            if (name.ExpiresAt >= latest.ExpiresAt)
            {
                latest = name; // of names expiring together, the one learned last
            }
        }

        Latest = latest;
    }

    /// <summary>The name expiring last (of several expiring together, the one learned last).</summary>
    public LearnedName Latest { get; }

    /// <summary>The names in the order they were last learned (the one learned last at the end).</summary>
    public IReadOnlyList<LearnedName> Names => _names;

    /// <summary>Whether <paramref name="name"/> (any case) is one of the names.</summary>
    public bool Has(string name) => TryGet(name, out _);

    /// <summary>The entry of <paramref name="name"/> (any case), when it is one of the names.</summary>
    public bool TryGet(string name, out LearnedName learned)
    {
        foreach (LearnedName known in _names)
        {
            if (string.Equals(known.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                learned = known;
                return true;
            }
        }

        learned = default;
        return false;
    }

    public static LearnedAddress Create(string name, long expiresAt) => new([new LearnedName(name, expiresAt)]);

    /// <summary><paramref name="name"/> with its expiry moved to <paramref name="now"/> at the earliest (never shortened):
    /// the last connection through it closed, and it starts its grace. This instance when the name is not here or
    /// already expires later.</summary>
    public LearnedAddress Touch(string name, long now)
    {
        for (int i = 0; i < _names.Length; i++)
        {
            if (string.Equals(_names[i].Name, name, StringComparison.OrdinalIgnoreCase))
            {
                if (_names[i].ExpiresAt >= now)
                {
                    return this;
                }

                LearnedName[] names = [.. _names];
                names[i] = names[i] with { ExpiresAt = now };
                return new LearnedAddress(names);
            }
        }

        return this;
    }

    /// <summary>
    /// Adds <paramref name="name"/> or extends its expiry (never shortens it), drops names expiring at or before
    /// <paramref name="forgetThrough"/>, and keeps at most <paramref name="maxNames"/> names: a new name replaces the
    /// one expiring first when it expires later, else it is not kept. A name an open connection holds
    /// (<paramref name="use"/>) is neither dropped nor replaced: it counts until that connection closes. The name learned
    /// (again, or in another's place) goes to the end: the names are kept in the order last learned.
    /// <paramref name="replaced"/> is the name the new one replaced, when it did; else null.
    /// </summary>
    public LearnedAddress With(string name, long expiresAt, long forgetThrough, int maxNames, AddressUse? use, out LearnedName? replaced)
    {
        replaced = null;
        var names = new List<LearnedName>(_names.Length + 1);
        LearnedName? relearned = null;
        foreach (LearnedName known in _names)
        {
            if (string.Equals(known.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                relearned = known with { ExpiresAt = Math.Max(known.ExpiresAt, expiresAt) };
            }
            else if (known.ExpiresAt > forgetThrough || use?.Holds(known.Name) == true)
            {
                names.Add(known);
            }
        }

        // The names are kept in the order they were last learned, the one learned last at the end: of several names
        // sharing an address it is the likeliest an application has just resolved (EgressPolicy names it first).
        if (relearned is { } again)
        {
            names.Add(again);
        }
        else
        {
            if (names.Count < maxNames)
            {
                names.Add(new LearnedName(name, expiresAt));
            }
            else
            {
                int first = -1;
                for (int i = 0; i < names.Count; i++)
                {
                    if ((first < 0 || names[i].ExpiresAt < names[first].ExpiresAt) && use?.Holds(names[i].Name) != true)
                    {
                        first = i;
                    }
                }

                if (first >= 0 && names[first].ExpiresAt < expiresAt)
                {
                    replaced = names[first];
                    names.RemoveAt(first);
                    names.Add(new LearnedName(name, expiresAt));
                }
            }
        }

        return new LearnedAddress([.. names]);
    }

    /// <summary>
    /// Drops names expiring at or before <paramref name="forgetThrough"/>: this instance when none do, null when all do.
    /// </summary>
    public LearnedAddress? Forget(long forgetThrough)
    {
        if (Latest.ExpiresAt <= forgetThrough)
        {
            return null;
        }

        return Array.TrueForAll(_names, name => name.ExpiresAt > forgetThrough)
            ? this
            : new LearnedAddress(Array.FindAll(_names, name => name.ExpiresAt > forgetThrough));
    }
}
