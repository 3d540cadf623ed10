namespace Egress.Policy;

/// <summary>What a policy does with a destination its entries do not allow (<c>egress.mode</c>).</summary>
public enum EgressMode
{
    /// <summary>Deny it (the default).</summary>
    Enforce,

    /// <summary>
    /// Allow it and say so: the decision is allowed with <see cref="PolicyDecision.WouldDeny"/> set and the reason
    /// <c>enforce</c> would deny with, which both hosts log as a would-deny line and count. Denied names resolve, and
    /// their answers are learned, so the following connection is allowed and reported too. Not relaxed: disabled egress
    /// (<c>egress.enabled = false</c>), internal ranges (instance metadata, loopback, private ranges) that no address or
    /// network entry covers, internal-range DNS answers (rebinding protection) and the parent's own addresses.
    /// </summary>
    Report,
}
