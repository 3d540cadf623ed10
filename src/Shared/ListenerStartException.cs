namespace Egress.Hosting;

/// <summary>A listener could not start (its address is in use, or needs a privilege); the message says which and why.</summary>
internal sealed class ListenerStartException : Exception
{
    public ListenerStartException()
    {
    }

    public ListenerStartException(string message)
        : base(message)
    {
    }

    public ListenerStartException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
