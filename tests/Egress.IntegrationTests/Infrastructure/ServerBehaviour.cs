using System.Net.Sockets;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>What a <see cref="WorldServer"/> does with one accepted connection.</summary>
internal delegate Task ServerBehaviour(NetworkStream stream, Socket socket, CancellationToken cancellationToken);
