using System.IO.Pipelines;

namespace Egress.Tests.Relay;

internal sealed record DuplexPipe(PipeReader Input, PipeWriter Output) : IDuplexPipe;
