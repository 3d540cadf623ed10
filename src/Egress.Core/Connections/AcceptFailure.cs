using System.Globalization;
using System.Net.Sockets;

namespace Egress.Connections;

/// <summary>
/// What a failed accept means, for the log. .NET maps both EMFILE (this process's RLIMIT_NOFILE) and ENFILE (the
/// system's fs.file-max) to <see cref="SocketError.TooManyOpenSockets"/>, whose text names only the second ("Too many
/// open files in system"), and an asynchronous accept does not keep the errno. The process's open descriptors tell
/// them apart: near RLIMIT_NOFILE it was the process's limit, well below it the system's. The log names the limit hit
/// with its value.
/// </summary>
internal static class AcceptFailure
{
    /// <summary>How far below RLIMIT_NOFILE the process's descriptors may be for a failure to count as EMFILE (others
    /// may have closed in between).</summary>
    public const int Margin = 64;

    /// <summary>The cause of <paramref name="exception"/> as logged, e.g. "the process's open-files limit (EMFILE, RLIMIT_NOFILE = 512)".</summary>
    /// <param name="exception">The accept's exception.</param>
    /// <param name="openFileLimit">RLIMIT_NOFILE, named when that is the limit hit.</param>
    /// <param name="openDescriptors">The process's open descriptors now; null when they cannot be counted (which
    /// at this point means the process is out of them).</param>
    public static string Describe(SocketException exception, long openFileLimit, int? openDescriptors) => exception.SocketErrorCode switch
    {
        SocketError.TooManyOpenSockets when openDescriptors < openFileLimit - Margin =>
            string.Create(CultureInfo.InvariantCulture, $"the system's open-files limit (ENFILE, fs.file-max; this process holds {openDescriptors} of RLIMIT_NOFILE = {openFileLimit})"),
        SocketError.TooManyOpenSockets =>
            string.Create(CultureInfo.InvariantCulture, $"the process's open-files limit (EMFILE, RLIMIT_NOFILE = {openFileLimit})"),
        _ => $"{exception.SocketErrorCode}: {exception.Message}",
    };

    /// <summary>
    /// The message of a socket or I/O failure for a log line, with the open-files limit named as for an accept when
    /// the failure is EMFILE or ENFILE (a tunnel connect or a pipe at the limit), else the exception's own message.
    /// </summary>
    /// <param name="exception">The failure.</param>
    public static string Message(Exception exception) =>
        exception is SocketException { SocketErrorCode: SocketError.TooManyOpenSockets } tooMany
            ? "out of descriptors: " + Describe(tooMany, DescriptorBudget.Process.OpenFileLimit, OpenFileLimit.OpenDescriptors())
            : exception.Message;
}
