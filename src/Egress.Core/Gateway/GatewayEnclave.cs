using System.Net.Sockets;
using Egress.Policy;
using Egress.Vsock;

namespace Egress.Gateway;

/// <summary>One <c>[[host.enclaves]]</c> entry as the gateway serves it: the enclave's CID (null: any CID, and
/// streams without one), its own policy (with its own allowlist cache), and what the start log says about it.</summary>
/// <param name="Cid">The CID, or null for "any".</param>
/// <param name="Policy">The policy its streams are decided by.</param>
/// <param name="Description">E.g. <c>policy sha256:1a2b3c4d5e6f (egress enabled, 2 destinations) from /etc/egress/a.toml</c>.</param>
/// <param name="Digest">The digest of its policy, compared with the enclave's own (its denial reports); null: none.</param>
/// <param name="Source">The file its policy comes from, e.g. <c>/etc/egress/a.toml</c>.</param>
internal sealed record GatewayEnclave(uint? Cid, EgressPolicy Policy, string Description, Configuration.PolicyDigest? Digest = null, string? Source = null)
{
    /// <summary>The entry's CID as logs and the <c>egress.enclave</c> tag write it: <c>16</c> or <c>any</c>.</summary>
    public string Label => Cid is { } cid ? cid.ToString(System.Globalization.CultureInfo.InvariantCulture) : "any";

    /// <summary>The CID of the VSOCK peer of an accepted stream (its remote <see cref="VsockEndPoint"/>); null for
    /// another transport, or when the kernel gives no peer address.</summary>
    public static uint? PeerCidOf(Socket stream)
    {
        try
        {
            return stream.RemoteEndPoint is VsockEndPoint peer ? peer.Cid : null;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return null;
        }
    }
}
