namespace Egress.Dns;

/// <summary>Answers one DNS query; the enclave forwarder and the parent's upstream forwarder each implement it.</summary>
internal interface IDnsAnswerer
{
    /// <summary>Answers <paramref name="query"/> into <paramref name="response"/>, which is sized to the answer.</summary>
    /// <param name="query">The query; implementations may rewrite its ID while it is in flight and restore it.</param>
    /// <param name="response">Receives the answer: read it with <see cref="DnsAnswerBuffer.Written"/>.</param>
    /// <param name="udp">Whether the client asked over UDP (its size limit applies).</param>
    /// <param name="clientInFlight">How many queries of the same client (UDP source, or stream) are in flight, this
    /// one included: a client with few may use places an admission limit keeps back from busy ones.</param>
    /// <param name="cancellationToken">Cancelled when nobody is left to take the answer (the stream was reset or
    /// timed out): the work on the query stops, and the answer is not sent.</param>
    /// <returns>The answer's length, or a negative number to send nothing.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    ValueTask<int> AnswerAsync(Memory<byte> query, DnsAnswerBuffer response, bool udp, int clientInFlight, CancellationToken cancellationToken);

    /// <summary>
    /// Answers a query refused for load at once, without forwarding it: SERVFAIL with an RFC 8914 Extended DNS Error
    /// (see <see cref="Wire.DnsMessage.WriteOverloaded"/>), logged (rate-limited) with <paramref name="reason"/> and
    /// counted as <c>overloaded</c>.
    /// </summary>
    /// <param name="query">The query.</param>
    /// <param name="response">Receives the answer; at least <see cref="Wire.DnsMessage.MaxErrorResponseLength"/> bytes.</param>
    /// <param name="reason">Which limit was reached, for the log.</param>
    /// <returns>The answer's length, or a negative number when the query cannot be answered (dropped).</returns>
    int AnswerOverloaded(ReadOnlySpan<byte> query, Span<byte> response, string reason);
}
