namespace Egress.Vsock;

/// <summary>A VSOCK address (context id and port).</summary>
public sealed class VsockEndPoint : System.Net.EndPoint
{
}
