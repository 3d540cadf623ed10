namespace Egress.Configuration;

/// <summary>
/// One <c>[[host.enclaves]]</c> entry: the enclave (by its VSOCK CID, or any CID) whose tunnel streams egress-host
/// decides with the <c>[egress]</c> and <c>[dns]</c> sections of another file.
/// </summary>
public sealed class EnclaveMapping
{
    internal EnclaveMapping(uint? cid, string configPath, SourceLocation location, SourceLocation? configLocation = null)
    {
        Cid = cid;
        ConfigPath = configPath;
        Location = location;
        ConfigLocation = configLocation ?? location;
    }

    /// <summary>Gets the enclave's CID (<c>cid = 16</c>: 1 or 4 … 4294967294; 0, 2 and 3 are never an enclave's); null for <c>cid = "any"</c>: every CID no other
    /// entry names, and streams on a <c>unix:</c> or <c>tcp://</c> tunnel, which have no CID.</summary>
    public uint? Cid { get; }

    /// <summary>Gets the file whose <c>[egress]</c> and <c>[dns]</c> decide this enclave's streams (<c>config</c>), relative
    /// paths resolved against the directory of the file that maps it.</summary>
    public string ConfigPath { get; }

    /// <summary>Gets where the entry was written.</summary>
    internal SourceLocation Location { get; }

    /// <summary>Gets where its <c>config</c> value was written (errors about the file point there).</summary>
    internal SourceLocation ConfigLocation { get; }

    /// <summary>The entry's CID as logs and the <c>egress.enclave</c> metric tag write it: <c>16</c> or <c>any</c>.</summary>
    /// <returns>The text.</returns>
    public override string ToString() => Cid is { } cid ? cid.ToString(System.Globalization.CultureInfo.InvariantCulture) : "any";
}
