using System.Collections.Frozen;
using System.Net;
using System.Net.NetworkInformation;
using Egress.Policy;

namespace Egress.Gateway;

/// <summary>
/// The parent's own addresses: every unicast address of every network interface (IPv4 and IPv6), each with its
/// interface's name, kept current: re-read when the kernel reports an address change (rtnetlink, through
/// <see cref="NetworkChange.NetworkAddressChanged"/>) and at least every <see cref="RefreshInterval"/> in case a report
/// was missed. A connection to one of them reaches a service on the parent itself (an IPv6 address of an EC2 parent
/// is usually global, so the internal ranges do not cover it), so the gateway denies them unless a single-address
/// entry names the address. Lookups take no lock and do not allocate.
/// </summary>
internal sealed class ParentAddresses : IDisposable
{
    /// <summary>The longest an address change can go unnoticed when the kernel's report is missed.</summary>
    internal static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(30);

    private readonly Func<IEnumerable<(string Interface, IPAddress Address)>> _read;
    private readonly ITimer _timer;
    private readonly bool _watching;
    private FrozenDictionary<UInt128, string> _addresses = FrozenDictionary<UInt128, string>.Empty;

    /// <summary>Reads the addresses now and keeps them current.</summary>
    /// <param name="read">Lists (interface, address) pairs; null: this machine's interfaces.</param>
    /// <param name="time">The clock of the periodic refresh.</param>
    /// <exception cref="IOException">The addresses cannot be read now (or their changes cannot be watched): an empty set
    /// would deny none of them, so the gateway does not start without them. Reading needs rtnetlink (getifaddrs), which a
    /// sandbox without <c>AF_NETLINK</c> refuses.</exception>
    public ParentAddresses(Func<IEnumerable<(string Interface, IPAddress Address)>>? read, TimeProvider time)
    {
        _read = read ?? ReadInterfaces;
        try
        {
            Volatile.Write(ref _addresses, ReadAll());
            if (read is null)
            {
                NetworkChange.NetworkAddressChanged += OnAddressChanged;
                _watching = true;
            }
        }
        catch (NetworkInformationException ex)
        {
            throw new IOException(
                $"cannot read this machine's own addresses ({ex.Message}), which egress-host denies to the enclave; it does not start without them "
                + "(they are read over rtnetlink: under systemd, RestrictAddressFamilies= must allow AF_NETLINK)", ex);
        }

        _timer = time.CreateTimer(_ => Refresh(), null, RefreshInterval, RefreshInterval);
    }

    /// <summary>Gets how many addresses are known now.</summary>
    public int Count => Volatile.Read(ref _addresses).Count;

    /// <summary>The addresses and their interfaces for a log line, e.g. <c>198.18.0.1 (eth0), 2001:db8::1 (eth0)</c>.</summary>
    public override string ToString() =>
        string.Join(", ", Volatile.Read(ref _addresses).Select(pair => $"{AddressValue.ToAddress(pair.Key)} ({pair.Value})").Order(StringComparer.Ordinal));

    /// <summary>Whether <paramref name="address"/> (IPv4-mapped IPv6 counts as IPv4) is one of the parent's; the
    /// interface that holds it.</summary>
    public bool TryGetInterface(IPAddress address, out string? interfaceName) =>
        Volatile.Read(ref _addresses).TryGetValue(AddressValue.Of(address), out interfaceName);

    /// <summary>Re-reads the addresses. A failure keeps the previous set (never an empty one by mistake).</summary>
    public void Refresh()
    {
        try
        {
            Volatile.Write(ref _addresses, ReadAll());
        }
        catch (NetworkInformationException)
        {
            // Keep what was known; the next change report or timer tick tries again.
        }
    }

    private FrozenDictionary<UInt128, string> ReadAll()
    {
        var addresses = new Dictionary<UInt128, string>();
        foreach (var (name, address) in _read())
        {
            addresses.TryAdd(AddressValue.Of(address), name);
        }

        return addresses.ToFrozenDictionary();
    }

    public void Dispose()
    {
        if (_watching)
        {
            NetworkChange.NetworkAddressChanged -= OnAddressChanged;
        }

        _timer.Dispose();
    }

    private void OnAddressChanged(object? sender, EventArgs e) => Refresh();

    private static IEnumerable<(string Interface, IPAddress Address)> ReadInterfaces()
    {
        foreach (NetworkInterface nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            foreach (UnicastIPAddressInformation unicast in nic.GetIPProperties().UnicastAddresses)
            {
                yield return (nic.Name, unicast.Address);
            }
        }
    }
}
