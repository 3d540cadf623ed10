using System.Net.Sockets;
using Egress.Connections;

namespace Egress.Tests.Connections;

public sealed class AcceptFailureTests
{
    private static readonly SocketException OutOfDescriptors = new((int)SocketError.TooManyOpenSockets);

    [Test]
    public void AtTheProcessLimitTheLogNamesRlimitNofileNotTheSystem()
    {
        Assert.That(AcceptFailure.Describe(OutOfDescriptors, 512, openDescriptors: 512),
            Is.EqualTo("the process's open-files limit (EMFILE, RLIMIT_NOFILE = 512)"));
        Assert.That(AcceptFailure.Describe(OutOfDescriptors, 512, openDescriptors: null),
            Is.EqualTo("the process's open-files limit (EMFILE, RLIMIT_NOFILE = 512)"), "/proc/self/fd could not even be opened");
    }

    [Test]
    public void WellBelowTheProcessLimitItIsTheSystemsLimit()
    {
        Assert.That(AcceptFailure.Describe(OutOfDescriptors, 65536, openDescriptors: 300),
            Is.EqualTo("the system's open-files limit (ENFILE, fs.file-max; this process holds 300 of RLIMIT_NOFILE = 65536)"));
    }

    [Test]
    public void OtherFailuresKeepTheirError()
    {
        Assert.That(AcceptFailure.Describe(new SocketException((int)SocketError.ConnectionAborted), 512, 10), Does.StartWith("ConnectionAborted: "));
    }

    [Test]
    public void TheProcessesDescriptorsAreCounted()
    {
        Assert.That(OpenFileLimit.OpenDescriptors(), Is.GreaterThan(2));
    }
}
