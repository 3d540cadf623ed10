namespace Egress.Policy;

/// <summary>
/// The open connections that hold one learned address (<see cref="AllowlistCache.Hold"/>), counted per name whose entry
/// allowed each of them (a connection counts for every name it was allowed through). Changed only under the cache's
/// write lock; read without it: a count read while a hold is taken or released is the one just before or just after.
/// </summary>
internal sealed class AddressUse
{
    /// <summary>The names held, copied on write when one is added; a name whose count fell to 0 is dropped then.</summary>
    private HeldName[] _names;
    private int _connections;

    /// <summary>The first connection's hold, through <paramref name="name"/> and <paramref name="others"/>.</summary>
    public AddressUse(string name, string[]? others)
    {
        _names = [];
        Add(name, others);
    }

    /// <summary>The open connections through the address, whatever their names.</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Whether an open connection was allowed through <paramref name="name"/> (case-insensitive).</summary>
    public bool Holds(string name) => ConnectionsThrough(name) > 0;

    /// <summary>The open connections through <paramref name="name"/> (case-insensitive).</summary>
    public int ConnectionsThrough(string name)
    {
        foreach (HeldName held in Volatile.Read(ref _names))
        {
            if (string.Equals(held.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                return Volatile.Read(ref held.Count);
            }
        }

        return 0;
    }

    /// <summary>One more connection, through <paramref name="name"/> and <paramref name="others"/> (names it was allowed
    /// through as well, or null). Under the cache's write lock.</summary>
    public void Add(string name, string[]? others)
    {
        AddName(name);
        foreach (string other in others ?? [])
        {
            AddName(other);
        }

        Volatile.Write(ref _connections, _connections + 1);
    }

    /// <summary>One connection through <paramref name="name"/> and <paramref name="others"/> ended (the names
    /// <see cref="Add"/> was given). Under the cache's write lock.</summary>
    public void Remove(string name, string[]? others)
    {
        RemoveName(name);
        foreach (string other in others ?? [])
        {
            RemoveName(other);
        }

        Volatile.Write(ref _connections, _connections - 1);
    }

    /// <summary>Whether exactly one open connection went through <paramref name="name"/>: its release will be the last.
    /// Under the cache's write lock.</summary>
    public bool IsLast(string name) => Find(name)?.Count == 1;

    private void AddName(string name)
    {
        HeldName? found = Find(name);
        if (found is null)
        {
            found = new HeldName(name);
            var names = new List<HeldName>(_names.Length + 1) { found };
            foreach (HeldName held in _names)
            {
                if (held.Count > 0)
                {
                    names.Add(held);
                }
            }

            Volatile.Write(ref _names, [.. names]);
        }

        Volatile.Write(ref found.Count, found.Count + 1);
    }

    private void RemoveName(string name)
    {
        if (Find(name) is { Count: > 0 } found) // always: AllowlistCache.Release is reached once per hold
        {
            Volatile.Write(ref found.Count, found.Count - 1);
        }
    }

    private HeldName? Find(string name)
    {
        foreach (HeldName held in _names)
        {
            if (string.Equals(held.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                return held;
            }
        }

        return null;
    }

    /// <summary>A name and its open connections.</summary>
    private sealed class HeldName(string name)
    {
        public readonly string Name = name;
        public int Count;
    }
}
