namespace Egress.Dns;

/// <summary>Answers one DNS query; the enclave forwarder and the parent's upstream forwarder each implement it.</summary>
internal interface IDnsAnswerer
{
    /// <summary>Answers <paramref name="query"/> into <paramref name="response"/> (at least 65535 bytes).</summary>
    /// <param name="query">The query; implementations may rewrite its ID while it is in flight and restore it.</param>
    /// <param name="response">Receives the answer.</param>
    /// <param name="udp">Whether the client asked over UDP (its size limit applies).</param>
    /// <returns>The answer's length, or a negative number to send nothing.</returns>
    ValueTask<int> AnswerAsync(Memory<byte> query, Memory<byte> response, bool udp);
}
